"""Side-by-side benchmark: the published pacifica-ingest 0.4.1 and this service, in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--runs N] [--out benchmarks/results]

Both services run against the same peers (the published archive interface over HTTP and the
HTTP test peers for uniqueid, policy and metadata), the same PostgreSQL server and the same
Redis broker. 0.4.1 is installed from PyPI into a throwaway virtualenv. Each bundle shape is
sent to both services in turn, several times; the medians are reported, with the floors of the
same disk (cp, sha1sum of the bundle) measured in the same run. Results go to
``<out>/results.md`` and ``<out>/results.json``.

Work in progress (issue 4): end-to-end and upload times, files/s, MB/s and get_state rates
are measured; peak memory and the embedded-archive shapes are still to come.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import services  # noqa: E402 - the repository's test helpers start the peers
from tests.support.bundles import file_object, transaction_metadata, write_tar  # noqa: E402
from tests.support.peers import MetadataApp, PeerServer, PolicyApp, UniqueIdApp  # noqa: E402
from tests.support.procs import BIN, Proc, free_port, run, wait_for  # noqa: E402
from tests.support.stack import CPCONFIG as TEST_CPCONFIG  # noqa: E402
from tests.support.stack import ArchiveInterface  # noqa: E402

logger = logging.getLogger("benchmark")
MiB = 1024 * 1024
LEGACY = Path.home() / ".cache" / "pacifica-ingest-tests" / "legacy-0.4.1"

SHAPES = {"full": [("1 x 1 GiB", 1, 1024 * MiB), ("100 x 10 MiB", 100, 10 * MiB), ("10000 x 4 KiB", 10000, 4096)],
          "quick": [("1 x 128 MiB", 1, 128 * MiB), ("20 x 5 MiB", 20, 5 * MiB), ("1000 x 4 KiB", 1000, 4096)]}

# The test servers' CherryPy config, with room for large, slow bodies and many clients.
CPCONFIG = TEST_CPCONFIG.replace("[/]", "server.socket_timeout: 300\nserver.thread_pool: 32\n\n[/]")


def legacy_venv() -> Path:
    """The published pacifica-ingest 0.4.1 in a throwaway virtualenv (built once)."""
    if not (LEGACY / "installed-bench").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LEGACY)], check=True)
        # Celery's Redis transport needs redis and packaging, which 0.4.1 does not declare.
        subprocess.run([str(LEGACY / "bin" / "pip"), "install", "-q", "pacifica-ingest==0.4.1", "psycopg2-binary",
                        "redis", "packaging"], check=True)
        (LEGACY / "installed-bench").write_text("0.4.1")
    return LEGACY


def make_bundle(path: Path, count: int, size: int) -> int:
    """Write a bundle of ``count`` random files of ``size`` bytes; return its size."""
    metadata = transaction_metadata()
    members = []
    for number in range(count):
        data = os.urandom(size)
        metadata.append(file_object(f"data/d{number // 1000}", f"f{number}.bin", data))
        members.append((f"data/d{number // 1000}/f{number}.bin", data))
    write_tar(str(path), members, metadata)
    return path.stat().st_size


class Service:
    """One ingest service (server and worker) with its own config, database and broker database."""

    def __init__(self, name: str, root: Path, python_bin: Path, settings: dict) -> None:
        self.name = name
        self.root = root
        self.bin = python_bin
        self.port = free_port()
        self.settings = settings
        self.procs: list[Proc] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.ini"
        config.write_text("\n".join(f"[{section}]\n" + "\n".join(f"{k} = {v}" for k, v in values.items())
                                    for section, values in self.settings.items()) + "\n")
        cpconfig = self.root / "cp.ini"
        cpconfig.write_text(CPCONFIG.format(port=self.port))
        env = {"INGEST_CONFIG": str(config), "INGEST_DATA_DIR": str(self.root / "data")}
        synced = run([str(self.bin / "pacifica-ingest-cmd"), "dbsync"], env=env, cwd=str(self.root))
        if synced.returncode != 0:
            raise RuntimeError(f"{self.name} dbsync failed: {synced.stderr}")
        server = Proc(f"{self.name}-server", [str(self.bin / "pacifica-ingest"), "--cp-config", str(cpconfig),
                                             "-p", str(self.port), "-a", "127.0.0.1"],
                      self.root / "server.log", env=env, cwd=str(self.root)).start()
        worker = Proc(f"{self.name}-worker", [str(self.bin / "celery"), "-A", "pacifica.ingest.tasks", "worker",
                                             "-c", "2", "-l", "WARNING", "--without-gossip", "--without-mingle"],
                      self.root / "worker.log", env=env, cwd=str(self.root)).start()
        self.procs = [server, worker]
        server.wait_http(self.url + "/", 60)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def ingest(self, bundle: Path, timeout: float = 1800) -> dict:
        """Upload ``bundle`` and wait for its job; return upload and end-to-end seconds."""
        started = time.perf_counter()
        with open(bundle, "rb") as body:
            response = requests.post(self.url + "/upload", data=body, timeout=timeout,
                                     headers={"Content-Type": "application/octet-stream"})
        uploaded = time.perf_counter()
        response.raise_for_status()
        job_id = response.json()["job_id"]
        session = requests.Session()

        def done():
            state = session.get(self.url + "/get_state", params={"job_id": job_id}, timeout=30).json()
            return state if state.get("complete") or (state["task"] == "ingest metadata"
                                                     and float(state["task_percent"]) >= 100) else None

        state = wait_for(done, timeout, f"{self.name} job {job_id}", interval=0.05)
        finished = time.perf_counter()
        if state["state"] != "OK":
            raise RuntimeError(f"{self.name} job {job_id} failed: {state}")
        return {"upload_s": uploaded - started, "end_to_end_s": finished - started, "job_id": job_id}

    def state_rate(self, job_id: int, clients: int, seconds: float) -> dict:
        """get_state requests per second with ``clients`` concurrent clients, and latency percentiles."""
        latencies: list[float] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def client():
            session = requests.Session()
            mine = []
            while time.perf_counter() < stop_at:
                begun = time.perf_counter()
                session.get(self.url + "/get_state", params={"job_id": job_id}, timeout=30).raise_for_status()
                mine.append(time.perf_counter() - begun)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies.sort()
        return {"rps": len(latencies) / seconds, "p50_ms": 1000 * latencies[len(latencies) // 2],
                "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def floors(bundle: Path, work: Path) -> dict:
    """cp and sha1sum of the bundle on the same disk."""
    started = time.perf_counter()
    subprocess.run(["cp", str(bundle), str(work / "copy.tar")], check=True)
    cp = time.perf_counter() - started
    (work / "copy.tar").unlink()
    started = time.perf_counter()
    subprocess.run(["sha1sum", str(bundle)], check=True, capture_output=True)
    return {"cp_s": cp, "sha1sum_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, finishes in a few minutes")
    parser.add_argument("--runs", type=int, default=None, help="runs per shape and service (default 3, quick 2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where results go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = args.runs or (2 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    legacy = legacy_venv() / "bin"
    peers = [PeerServer(UniqueIdApp()).start(), PeerServer(PolicyApp()).start(), PeerServer(MetadataApp()).start()]
    archive = ArchiveInterface(work / "archive").start()
    common = {
        "ingest": {"transfer_size": "4 Mb"},
        "uniqueid": {"url": peers[0].url},
        "policy": {"ingest_url": peers[1].url + "/ingest"},
        "archiveinterface": {"url": archive.url},
        "metadata": {"ingest_url": peers[2].url + "/ingest"},
    }
    services_ = []
    for name, python_bin, redis_number in (("0.4.1", legacy, 10), ("ours", BIN, 11)):
        settings = json.loads(json.dumps(common))
        settings["ingest"]["volume_path"] = str(work / name / "volume")
        os.makedirs(settings["ingest"]["volume_path"], exist_ok=True)
        settings["celery"] = {"broker_url": services.redis_db(redis_number),
                              "backend_url": services.redis_db(redis_number + 2)}
        database = f"pacifica_ingest_bench_{name.replace('.', '_')}"
        settings["database"] = {"peewee_url": services.create_postgres_db(database)}
        services_.append(Service(name, work / name, python_bin, settings))
    results: dict = {"shapes": {}, "get_state": {}, "machine": os.uname().nodename, "quick": args.quick}
    try:
        for service in services_:
            service.start()
        for label, count, size in SHAPES["quick" if args.quick else "full"]:
            bundle = work / "bundle.tar"
            total = make_bundle(bundle, count, size)
            shape = {"bundle_bytes": total, "files": count, "floors": floors(bundle, work)}
            samples: dict[str, list[dict]] = {service.name: [] for service in services_}
            for _run in range(runs):
                for service in services_:
                    samples[service.name].append(service.ingest(bundle))
                    logger.info("%s %s: %.2fs", label, service.name, samples[service.name][-1]["end_to_end_s"])
            for name, values in samples.items():
                e2e = statistics.median(v["end_to_end_s"] for v in values)
                shape[name] = {"end_to_end_s": e2e, "upload_s": statistics.median(v["upload_s"] for v in values),
                               "files_per_s": count / e2e, "mb_per_s": total / e2e / 1e6,
                               "job_id": values[-1]["job_id"]}
            shape["ratio"] = shape["0.4.1"]["end_to_end_s"] / shape["ours"]["end_to_end_s"]
            results["shapes"][label] = shape
            bundle.unlink()
        for service in services_:
            job_id = next(iter(results["shapes"].values()))[service.name]["job_id"]
            results["get_state"][service.name] = {clients: service.state_rate(job_id, clients, 3 if args.quick else 10)
                                                  for clients in (1, 16)}
    finally:
        for service in services_:
            service.stop()
        archive.stop()
        for peer in peers:
            peer.stop()
    write_results(results, Path(args.out))
    return 0


def write_results(results: dict, out: Path) -> None:
    """Write results.json and a Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = ["| shape | 0.4.1 end to end | ours end to end | ratio | 0.4.1 upload | ours upload | ours files/s | "
             "ours MB/s | cp | sha1sum |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, shape in results["shapes"].items():
        old, new, floor = shape["0.4.1"], shape["ours"], shape["floors"]
        lines.append(f"| {label} | {old['end_to_end_s']:.2f} s | {new['end_to_end_s']:.2f} s | {shape['ratio']:.2f}x | "
                     f"{old['upload_s']:.2f} s | {new['upload_s']:.2f} s | {new['files_per_s']:.0f} | "
                     f"{new['mb_per_s']:.0f} | {floor['cp_s']:.2f} s | {floor['sha1sum_s']:.2f} s |")
    lines += ["", "| get_state | 0.4.1 req/s | ours req/s | ratio | ours p50 / p99 |", "|---|---|---|---|---|"]
    for clients in (1, 16):
        old, new = results["get_state"]["0.4.1"][clients], results["get_state"]["ours"][clients]
        lines.append(f"| {clients} client(s) | {old['rps']:.0f} | {new['rps']:.0f} | {new['rps'] / old['rps']:.2f}x | "
                     f"{new['p50_ms']:.1f} / {new['p99_ms']:.1f} ms |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    logger.info("results in %s\n%s", out, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
