"""A long-distance link, emulated on loopback: how much sooner a bundle arrives in parallel streams.

    .venv/bin/python benchmarks/tus_link.py [--size-mib 1024] [--streams 1,4,8] [--out DIR]

A TCP proxy between the client and the service delays every byte by ``--delay-ms`` (40) each way
and caps each connection at ``--rate-mbps`` (20 MB/s), the way a long link caps one stream. The
published tus-js-client (Node.js) sends the same bundle with ``parallelUploads`` 1, 4 and 8 to a
fresh embedded service (``pacifica-ingest`` of this checkout), and the time from its start to its
success is measured: the upload, and for parallel uploads the final request's concatenation.
The baseline is the single stream of the same run; the table gives each time and its speed-up,
and the CPU seconds the service's process and the emulated link spent, to say what limits it.
Needs ``npm ci`` in ``tests/support/js``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.bundles import make_bundle  # noqa: E402 - the repository root is on the path first
from tests.support.procs import BIN, Proc, free_port  # noqa: E402

JS = ROOT / "tests" / "support" / "js"
MiB = 1 << 20


class Link:
    """A loopback TCP proxy that delays each direction by ``delay`` seconds and caps each
    connection's direction at ``rate`` bytes a second (asyncio, in a thread of its own)."""

    def __init__(self, target_port: int, delay: float, rate: float) -> None:
        self.target_port, self.delay, self.rate = target_port, delay, rate
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def start(self) -> Link:
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self.ready.set()
        with contextlib.suppress(RuntimeError, asyncio.CancelledError):
            self.loop.run_until_complete(server.serve_forever())

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Each block leaves ``delay`` after it arrived, and no sooner than the rate allows; at most
        # a few bandwidth-delay products wait in the queue (the link's buffer), then reading pauses.
        queue: asyncio.Queue = asyncio.Queue(maxsize=max(4, int(self.rate * self.delay * 4 / 65536)))

        async def deliver() -> None:
            free_at = 0.0
            while (item := await queue.get()) is not None:
                arrived, block = item
                send_at = max(arrived + self.delay, free_at)
                free_at = send_at + len(block) / self.rate
                if (wait := send_at - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                writer.write(block)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while block := await reader.read(65536):
                await queue.put((time.monotonic(), block))
        except (ConnectionError, OSError):
            pass
        await queue.put(None)
        with contextlib.suppress(ConnectionError, OSError):
            await sender

    def stop(self) -> None:
        def shut() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_later(0.1, self.loop.stop)

        self.loop.call_soon_threadsafe(shut)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_env(data: Path) -> dict[str, str]:
    """The environment of a fresh embedded service in ``data``: no configuration file, and no
    embedded worker (the upload alone is measured, not the archiving that follows)."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "empty.ini").write_text("")
    return {"INGEST_CONFIG": str(data / "empty.ini"), "INGEST_DATA_DIR": str(data / "data"),
            "INGEST_EMBEDDED_WORKER": "false", "INGEST_MAX_UPLOAD_SIZE": "0"}


def start_service(data: Path, name: str, port: int, *options: str) -> Proc:
    """``pacifica-ingest`` of this checkout on ``port`` (with ``options``), answering."""
    server = Proc(name, [str(BIN / "pacifica-ingest"), "-p", str(port), "-a", "127.0.0.1", *options],
                  data / "server.log", env=service_env(data)).start()
    server.wait_http(f"http://127.0.0.1:{port}/", 60)
    return server


def run(size_mib: int, streams: list[int], delay_ms: float, rate_mbps: float, work: Path) -> dict:
    bundle = work / "bundle.tar"
    count = 4
    make_bundle(str(bundle), {f"data/link/part{n}.bin": os.urandom(size_mib * MiB // count) for n in range(count)})
    size = bundle.stat().st_size
    results = {"size_bytes": size, "delay_ms": delay_ms, "rate_mb_per_s": rate_mbps, "runs": {}}
    for parallel in streams:
        data = work / f"service-{parallel}"
        port = free_port()
        server = start_service(data, f"tus-link-{parallel}", port)
        link = None
        try:
            link = Link(port, delay_ms / 1000, rate_mbps * 1e6).start()
            options = {"endpoint": f"http://127.0.0.1:{link.port}/uploads/", "file": str(bundle),
                       "parallel": parallel, "chunkSize": 64 * MiB}
            server_cpu, link_cpu = cpu_seconds(server.popen.pid), time.process_time()
            started = time.monotonic()
            done = subprocess.run([shutil.which("node"), str(JS / "upload.mjs"), json.dumps(options)],
                                  capture_output=True, text=True, timeout=3600)
            took = time.monotonic() - started
            if done.returncode != 0:
                raise RuntimeError(f"{parallel} streams: the upload failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
            concat = re.search(r"partial uploads concatenated \(\d+ bytes\) for \S+ in ([\d.]+) s", server.log())
            results["runs"][parallel] = {
                "seconds": round(took, 2), "mb_per_s": round(size / took / 1e6, 1),
                "concatenation_s": round(float(concat.group(1)), 2) if concat else 0.0,
                "service_cpu_s": round(cpu_seconds(server.popen.pid) - server_cpu, 1),
                "link_cpu_s": round(time.process_time() - link_cpu, 1)}
            print(json.dumps({parallel: results["runs"][parallel]}), flush=True)
        finally:
            if link is not None:
                link.stop()
            server.stop()
            shutil.rmtree(data / "data", ignore_errors=True)
    base = results["runs"][streams[0]]["seconds"]
    for entry in results["runs"].values():
        entry["speedup"] = round(base / entry["seconds"], 2)
    return results


def table(results: dict) -> str:
    """The README's table."""
    lines = [f"{results['size_bytes'] / MiB:.0f} MiB through {results['delay_ms']:g} ms each way, "
             f"{results['rate_mb_per_s']:g} MB/s per connection:", "",
             "| streams | time | throughput | speed-up | of which concatenation | CPU s: service / link |",
             "|---|---|---|---|---|---|"]
    for streams, run_ in results["runs"].items():
        lines.append(f"| {streams} | {run_['seconds']:.1f} s | {run_['mb_per_s']:.0f} MB/s | {run_['speedup']:.2f}x "
                     f"| {run_['concatenation_s']:.1f} s | {run_['service_cpu_s']:.1f} / {run_['link_cpu_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--delay-ms", type=float, default=40)
    parser.add_argument("--rate-mbps", type=float, default=20)
    parser.add_argument("--out", default=None, help="directory for results.json and table.md")
    args = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # connections cut at the end of a run
    with tempfile.TemporaryDirectory(prefix="tus-link-") as work:
        results = run(args.size_mib, [int(n) for n in args.streams.split(",")], args.delay_ms, args.rate_mbps,
                      Path(work))
    text = table(results)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "results.json").write_text(json.dumps(results, indent=2))
        Path(args.out, "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
