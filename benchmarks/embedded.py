"""The embedded service against the machine's own floor for the same work.

    .venv/bin/python benchmarks/embedded.py [--shapes 1000x1KiB,...] [--runs N] [--out DIR]

For each shape a bundle of random files is written, then, in turn, ``--runs`` times (medians):

- ``floor``: this machine doing the same work with nothing else: read the tar once, write each
  member to a fresh file, SHA-1 every byte, one ``sync``;
- ``ours``: the service with no configuration at all (``pacifica-ingest``, embedded everything,
  a fresh data directory each run), timed from the first byte of a streaming ``POST /upload``
  until ``get_state`` says complete; the upload alone is timed too, and the peak RSS of the
  server and of its embedded worker.

Results go to ``<out>/embedded.md`` and ``embedded.json``, with the date, commit and command.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure import peak_rss_mb, process_tree, stage_spans  # noqa: E402

from tests.support.bundles import file_object, transaction_metadata  # noqa: E402
from tests.support.procs import BIN, Proc, free_port, wait_for  # noqa: E402

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
SHAPES = {"1000x1KiB": (1000, KiB), "10000x1KiB": (10_000, KiB), "40000x1KiB": (40_000, KiB),
          "100000x1KiB": (100_000, KiB), "1x1GiB": (1, GiB), "1x4GiB": (1, 4 * GiB)}
BLOCK = 4 * MiB


def settle(quiet: float = 2.0, longest: float = 120.0) -> None:
    """Wait until the disks have been idle for ``quiet`` seconds: removing files on a filesystem
    mounted with ``discard`` (this machine's) sends trims that slow the next run severalfold."""
    os.sync()

    def busy() -> int:
        with open("/proc/diskstats", encoding="ascii") as stats:
            return sum(int(fields[12]) for fields in (line.split() for line in stats) if len(fields) > 12)

    deadline, last, since = time.monotonic() + longest, busy(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = busy()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def write_bundle(path: Path, count: int, size: int) -> None:
    """A bundle of ``count`` random files of ``size`` bytes, metadata.txt last, written as it is made."""
    metadata = transaction_metadata()
    with tarfile.open(path, "w") as tar:
        for number in range(count):
            name = f"data/d{number // 1000}/f{number}.bin"
            digest = hashlib.sha1()
            with tempfile.TemporaryFile() as data:
                left = size
                while left:
                    block = os.urandom(min(left, BLOCK))
                    digest.update(block)
                    data.write(block)
                    left -= len(block)
                data.seek(0)
                info = tarfile.TarInfo(name)
                info.size = size
                tar.addfile(info, data)
            item = file_object(f"data/d{number // 1000}", f"f{number}.bin", b"")
            item.update(size=size, hashsum=digest.hexdigest())
            metadata.append(item)
        raw = json.dumps(metadata).encode()
        info = tarfile.TarInfo("metadata.txt")
        info.size = len(raw)
        with tempfile.TemporaryFile() as data:
            data.write(raw)
            data.seek(0)
            tar.addfile(info, data)


def floor(bundle: Path, work: Path) -> float:
    """Seconds to read the tar once, write each member to a fresh file, SHA-1 every byte, sync.

    The files are left in ``work`` (removed by the caller after the shape: removing thousands of
    files just before the next run slows that run's file creation severalfold on ext4)."""
    target = work
    target.mkdir(parents=True)
    buffer = memoryview(bytearray(BLOCK))
    os.sync()  # nothing else's dirty pages in the one sync that is timed
    started = time.perf_counter()
    with open(bundle, "rb", buffering=0) as source:
        while True:
            header = source.read(512)
            if len(header) < 512 or not any(header):
                break
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            kind = header[156:157]
            digest = hashlib.sha1()
            # closed below, after its bytes are written
            out = open(target / str(source.tell()), "wb", buffering=0) if kind in (b"0", b"\0") else None  # noqa: SIM115
            left = size
            while left:
                count = source.readinto(buffer[:min(left, BLOCK)])
                digest.update(buffer[:count])
                if out is not None:
                    out.write(buffer[:count])
                left -= count
            if out is not None:
                out.close()
            source.seek(-size % 512, os.SEEK_CUR)
    os.sync()
    return time.perf_counter() - started


def upload(port: int, path: Path) -> dict:
    """POST the file at ``path`` to ``/upload``, sent with ``sendfile`` (the client costs nothing
    that the measurement would count); return the JSON answer."""
    size = path.stat().st_size
    with socket.create_connection(("127.0.0.1", port), timeout=3600) as sock, open(path, "rb") as handle:
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
        sock.sendfile(handle)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"upload refused: {answer[:500]!r}")
    return json.loads(body)


def ours(bundle: Path, work: Path) -> dict:
    """One run of the embedded service on a fresh data directory (``work``, left for the caller
    to remove, as ``floor``'s files)."""
    data = work
    data.mkdir(parents=True)
    port = free_port()
    # No configuration at all: a home of its own (no ~/.pacifica-ingest/config.ini to read).
    env = {"HOME": str(data), "INGEST_DATA_DIR": str(data / "data")}
    server = Proc("embedded-bench", [str(BIN / "pacifica-ingest"), "-p", str(port)], data / "server.log",
                  env=env).start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/", 60)
        # A running service's worker is ready: the timing starts once Celery says so.
        wait_for(lambda: " ready." in server.log(), 60, "the embedded worker")
        os.sync()  # as for the floor: nothing else's dirty pages to flush meanwhile
        started = time.perf_counter()
        job_id = upload(port, bundle)["job_id"]
        uploaded = time.perf_counter() - started
        while True:
            state = requests.get(f"http://127.0.0.1:{port}/get_state", params={"job_id": job_id}, timeout=60).json()
            if state["complete"]:
                break
            time.sleep(0.02)
        took = time.perf_counter() - started
        if state["state"] != "OK":
            raise RuntimeError(f"the job failed: {state}")
        peaks = {pid: peak_rss_mb(pid) for pid in process_tree(server.popen.pid)}
        return {"seconds": took, "upload_seconds": uploaded, "peak_rss_mb": max(peaks.values()),
                "stages": stage_seconds(data / "data" / "ingest.sqlite3", job_id)}
    finally:
        server.stop(signal.SIGTERM)


def stage_seconds(database: Path, job_id: int) -> dict[str, float]:
    """Seconds from each stage's first event to the next stage's first event (the last stage's
    to the job's last event), from the job's history in the embedded database (the API rounds
    its times to the second)."""
    with sqlite3.connect(database) as connection:
        history = connection.execute("SELECT task, time FROM ingeststateevent WHERE job_id = ? ORDER BY event_id",
                                     (job_id,)).fetchall()
    return stage_spans([(task, datetime.datetime.fromisoformat(moment)) for task, moment in history])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list of " + ", ".join(SHAPES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--work", default=None, help="where bundles are written (default: a temporary folder)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="pacifica-embedded-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    rows = []
    for name in args.shapes.split(","):
        count, size = SHAPES[name]
        bundle = work / f"{name}.tar"
        if not bundle.exists():
            write_bundle(bundle, count, size)
        floors, runs = [], []
        for run in range(args.runs):
            settle()
            floors.append(floor(bundle, work / f"{name}-floor-{run}"))
            settle()
            runs.append(ours(bundle, work / f"{name}-service-{run}"))
        for run in range(args.runs):
            for kind in ("floor", "service"):
                shutil.rmtree(work / f"{name}-{kind}-{run}", ignore_errors=True)
        row = {"shape": name, "floor_s": statistics.median(floors),
               "ours_s": statistics.median(run["seconds"] for run in runs),
               "upload_s": statistics.median(run["upload_seconds"] for run in runs),
               "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
               "runs": {"floor_s": floors, "ours_s": [run["seconds"] for run in runs],
                        "upload_s": [run["upload_seconds"] for run in runs]},
               "stages": {task: statistics.median(run["stages"].get(task, 0.0) for run in runs)
                          for task in runs[0]["stages"]}}
        row["ratio"] = row["ours_s"] / row["floor_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if name in ("1x1GiB", "1x4GiB"):
            bundle.unlink()  # the large bundles are cheap to make again and costly to keep
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "benchmarks/embedded.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Embedded service against the floor, {stamp}, commit {commit}, runs {args.runs} (medians): `{command}`",
             "", "| shape | ours | upload alone | floor | ours / floor | peak RSS |", "|---|---|---|---|---|---|"]
    lines += [f"| {row['shape']} | {row['ours_s']:.2f} s | {row['upload_s']:.2f} s | {row['floor_s']:.2f} s | "
              f"{row['ratio']:.2f} | {row['peak_rss_mb']:.0f} MB |" for row in rows]
    lines += ["", "Stages of 'ours' (seconds from a stage's first event to the next stage's, medians):", ""]
    lines += [f"- {row['shape']}: " + ", ".join(f"{task} {seconds:.2f}" for task, seconds in row["stages"].items())
              for row in rows]
    (out / "embedded.md").write_text("\n".join(lines) + "\n")
    (out / "embedded.json").write_text(json.dumps({"date": stamp, "commit": commit, "runs": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
