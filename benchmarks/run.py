"""Side-by-side benchmark: the published pacifica-ingest 0.4.1 and this service, in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--runs N] [--out benchmarks/results]

Four services run against the same peers (the HTTP test peers for uniqueid, policy and
metadata), the same PostgreSQL server and the same Redis server:

- ``0.4.1``, installed from PyPI into a throwaway virtualenv, with the published archive
  interface over HTTP;
- ``ours``, this repository's service on its default settings, with the same archive interface;
- ``ours-embedded``, the same with ``[archiveinterface] url = embedded:`` (the built-in archive);
- ``ours-unconfirmed``, ``ours`` with ``[archiveinterface] confirm_puts = false`` (no HEAD after
  each PUT), which is safe with this archive interface: it runs one request thread.

Each bundle shape goes to the three services in turn, ``--runs`` times; medians are reported.
The disk's floors (cp, sha1sum, tar -x) for each bundle, the archive interface's own limit for
small files, get_state rates and the peak memory of the web and worker processes are measured in
the same run. Results go to ``<out>/results.md`` and ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure import MiB, archive_floor, archive_limit, floors, state_rate  # noqa: E402
from report import write_results  # noqa: E402
from services import Service, legacy_venv, make_bundle  # noqa: E402

from pacifica.ingest.config import EMBEDDED  # noqa: E402
from tests.support import services  # noqa: E402 - the repository's test helpers start the peers
from tests.support.peers import MetadataApp, PeerServer, PolicyApp, UniqueIdApp  # noqa: E402
from tests.support.procs import BIN  # noqa: E402
from tests.support.stack import ArchiveInterface  # noqa: E402

logger = logging.getLogger("benchmark")

SHAPES = {
    "full": [("1 x 10 MiB", 1, 10 * MiB), ("1 x 1 GiB", 1, 1024 * MiB), ("100 x 10 MiB", 100, 10 * MiB),
             ("10000 x 4 KiB", 10000, 4096)],
    "quick": [("1 x 10 MiB", 1, 10 * MiB), ("1 x 128 MiB", 1, 128 * MiB), ("20 x 5 MiB", 20, 5 * MiB),
              ("1000 x 4 KiB", 1000, 4096)],
}
SERVICES = ("0.4.1", "ours", "ours-embedded", "ours-unconfirmed")
# "ours-unconfirmed" skips the HEAD after each PUT ([archiveinterface] confirm_puts = false),
# which is safe here: the archive interface runs with one request thread.
DEFAULT_SERVICES = SERVICES


def build_services(work: Path, peers: list[PeerServer], archive: ArchiveInterface, names: list[str]) -> list[Service]:
    """The services to compare, each with its own volume, database and Redis databases."""
    built = []
    for number, name in enumerate(SERVICES):
        if name not in names:
            continue
        settings = {
            "ingest": {"volume_path": str(work / name / "volume")},
            "uniqueid": {"url": peers[0].url},
            "policy": {"ingest_url": peers[1].url + "/ingest"},
            "archiveinterface": {"url": EMBEDDED if name == "ours-embedded" else archive.url},
            "metadata": {"ingest_url": peers[2].url + "/ingest"},
            "celery": {"broker_url": services.redis_db(8 + 2 * number),
                       "backend_url": services.redis_db(9 + 2 * number)},
            "database": {"peewee_url": services.create_postgres_db(f"pacifica_ingest_bench_{number}")},
        }
        if name == "0.4.1":
            settings["ingest"]["transfer_size"] = "4 Mb"
        if name == "ours-unconfirmed":
            settings["archiveinterface"]["confirm_puts"] = "false"
        os.makedirs(settings["ingest"]["volume_path"], exist_ok=True)
        python_bin = legacy_venv() if name == "0.4.1" else BIN
        built.append(Service(name, work / name, python_bin, settings))
    return built


def run_shape(label: str, count: int, size: int, work: Path, runs: int, services_: list[Service],
              archive_port: int, first_id: int) -> dict:
    """Send one bundle shape to every service ``runs`` times, alternating; return the medians."""
    bundle = work / "bundle.tar"
    total = make_bundle(bundle, count, size)
    shape = {"bundle_bytes": total, "files": count, "floors": floors(bundle, work)}
    shape["floors"]["archive_put_s"] = archive_floor(archive_port, count, size, first_id)
    samples: dict[str, list[dict]] = {service.name: [] for service in services_}
    for _run in range(runs):
        for service in services_:
            sample = service.ingest(bundle)
            samples[service.name].append(sample)
            logger.info("%s %s: %.2f s (upload %.2f s)", label, service.name, sample["end_to_end_s"],
                        sample["upload_s"])
    for name, values in samples.items():
        e2e = statistics.median(value["end_to_end_s"] for value in values)
        shape[name] = {"end_to_end_s": e2e, "upload_s": statistics.median(value["upload_s"] for value in values),
                       "files_per_s": count / e2e, "mb_per_s": total / e2e / 1e6, "job_id": values[-1]["job_id"],
                       "web_rss_mb": max(value["web_rss_mb"] for value in values),
                       "worker_rss_mb": max(value["worker_rss_mb"] for value in values),
                       "runs": [value["end_to_end_s"] for value in values]}
    bundle.unlink()
    return shape


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM (timeout, kill) must still stop the services it started, in the finally below.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, finishes in a few minutes")
    parser.add_argument("--runs", type=int, default=None, help="runs per shape and service (default 3, quick 2)")
    parser.add_argument("--services", default=",".join(DEFAULT_SERVICES),
                        help=f"which of {', '.join(SERVICES)} to run (comma-separated)")
    parser.add_argument("--shapes", default=None, help="only the shapes whose label contains one of these "
                                                        "(comma-separated), e.g. 'GiB,4 KiB'")
    parser.add_argument("--profile", action="store_true",
                        help="sample our processes with py-spy (pip install py-spy); flame graph data in <out>/profile")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where results go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = args.runs or (2 if args.quick else 3)
    shapes = SHAPES["quick" if args.quick else "full"]
    if args.shapes:
        wanted = [part.strip() for part in args.shapes.split(",")]
        shapes = [shape for shape in shapes if any(part in shape[0] for part in wanted)]
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    peers = [PeerServer(UniqueIdApp()).start(), PeerServer(PolicyApp()).start(), PeerServer(MetadataApp()).start()]
    archive = ArchiveInterface(work / "archive").start()
    services_ = build_services(work, peers, archive, args.services.split(","))
    results: dict = {"machine": machine(), "quick": args.quick, "runs": runs, "command": " ".join(sys.argv),
                     "shapes": {}, "get_state": {}, "archive_limit": {}}
    try:
        for service in services_:
            service.start()
            if args.profile and service.name != "0.4.1":
                service.profile(Path(args.out) / "profile")
        for number, (label, count, size) in enumerate(shapes):
            results["shapes"][label] = run_shape(label, count, size, work, runs, services_, archive.port,
                                                 2 * 10**9 + number * 10**6)
        for service in services_:
            if service.name == "ours-embedded" or not results["shapes"]:
                continue
            job_id = next(iter(results["shapes"].values()))[service.name]["job_id"]
            seconds = 3 if args.quick else 10
            results["get_state"][service.name] = [state_rate(service.port, job_id, clients, seconds)
                                                  for clients in (1, 16)]
            if service.name == "ours":
                results["get_state"]["ours, GET /"] = [state_rate(service.port, None, clients, seconds)
                                                       for clients in (1, 16)]
        count = 1000 if args.quick else 4000
        results["archive_limit"] = {
            f"{'PUT + HEAD' if confirm else 'PUT'} over {connections} connection(s)":
                archive_limit(archive.port, count, 10**9 + (2 * connections + confirm) * 10**6, connections, confirm)
            for confirm in (False, True) for connections in (1, 4)}
    finally:
        for service in services_:
            service.stop()
        archive.stop()
        for peer in peers:
            peer.stop()
    write_results(results, Path(args.out))
    return 0


def machine() -> dict:
    """What the numbers were measured on."""
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_gib = int(meminfo.readline().split()[1]) / 1024 / 1024
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory_gib, 1),
            "python": sys.version.split()[0], "kernel": os.uname().release}


if __name__ == "__main__":
    sys.exit(main())
