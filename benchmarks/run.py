"""Side-by-side benchmark against the published Pacifica services as they are deployed.

    .venv/bin/python benchmarks/run.py [--quick] [--runs N] [--deployments cherrypy,uwsgi-http] [--out DIR]

The published uniqueid 0.5.1, policy 0.8.3 and metadata 0.13.0 (seeded with their own test
data, on PostgreSQL) and the published archive interface 0.4.2 run with their default settings,
the archive in each of its documented deployments in turn:

- ``cherrypy``: its own CherryPy server (10 request threads);
- ``uwsgi-http``: uWSGI ``--http-socket`` with 4 processes x 1 thread (its Linux deployment).

Against each, these services ingest the same bundles, in turn, ``--runs`` times (medians):

- ``0.4.1``: the published pacifica-ingest, from PyPI in a throwaway virtualenv;
- ``ours``: this repository's service on its default settings;
- ``ours x4`` (uWSGI only): ``archive_concurrency = 4``, four files at once, for an archive
  deployment that takes concurrent requests (each PUT then checked with a HEAD, by default);
- ``ours x4, no HEAD`` (uWSGI only): the same with ``confirm_puts = false``.

Floors measured in the same run: "archive alone" (a lean client PUTs the same files from memory,
one at a time, and over 4 connections under uWSGI), "metadata alone" (the metadata service
records a transaction of as many files) and "policy alone" (the policy service accepts one).
Every job starts on an idle disk. Results go to ``<out>/results.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from embedded import settle  # noqa: E402
from measure import MiB, archive_floor, chosen_shapes, floors, metadata_floor, policy_floor, shape_arguments, state_rate  # noqa: E402
from report import write_results  # noqa: E402
from services import Service, legacy_venv, make_bundle  # noqa: E402

from tests.support import services  # noqa: E402 - the repository's test helpers start the peers
from tests.support.procs import BIN  # noqa: E402
from tests.support.published import PublishedArchive, PublishedPeers  # noqa: E402

logger = logging.getLogger("benchmark")

SHAPES = {
    "full": [("50 x 1 MiB", 50, MiB), ("1000 x 4 KiB", 1000, 4096), ("1 x 1 GiB", 1, 1024 * MiB)],
    "quick": [("20 x 1 MiB", 20, MiB), ("200 x 4 KiB", 200, 4096), ("1 x 64 MiB", 1, 64 * MiB)],
}
DEPLOYMENTS = ("cherrypy", "uwsgi-http")
CONCURRENT = "ours x4"
UNCONFIRMED = "ours x4, no HEAD"


def build_services(work: Path, peers: PublishedPeers, archive: PublishedArchive, number: int) -> list[Service]:
    """The services to compare against ``archive``, each with its own volume, database and Redis databases."""
    names = ["0.4.1", "ours"] + ([CONCURRENT, UNCONFIRMED] if archive.deployment != "cherrypy" else [])
    built = []
    # Results of every service share one Redis database (keys are task ids); brokers each have one.
    backend = services.redis_db()
    for index, name in enumerate(names):
        slot = number * 4 + index
        settings = {
            "ingest": {"volume_path": str(work / archive.deployment / name.replace(" ", "-") / "volume")},
            "uniqueid": {"url": peers.uniqueid_url},
            "policy": {"ingest_url": peers.policy_url},
            "archiveinterface": {"url": archive.url},
            "metadata": {"ingest_url": peers.metadata_url},
            "celery": {"broker_url": services.redis_db(), "backend_url": backend},
            "database": {"peewee_url": services.create_postgres_db(f"pacifica_ingest_bench_{slot}")},
        }
        if name == "0.4.1":
            settings["ingest"]["transfer_size"] = "4 Mb"
        if name in (CONCURRENT, UNCONFIRMED):
            settings["ingest"]["archive_concurrency"] = "4"
        if name == UNCONFIRMED:
            settings["archiveinterface"]["confirm_puts"] = "false"
        os.makedirs(settings["ingest"]["volume_path"], exist_ok=True)
        python_bin = legacy_venv() if name == "0.4.1" else BIN
        built.append(Service(name, work / archive.deployment / name.replace(" ", "-"), python_bin, settings))
    return built


def run_shape(label: str, count: int, size: int, work: Path, runs: int, services_: list[Service],
              archive: PublishedArchive, peers: PublishedPeers, first_id: int) -> dict:
    """Send one bundle shape to every service ``runs`` times, alternating; return the medians and floors."""
    bundle = work / "bundle.tar"
    total = make_bundle(bundle, count, size)
    fresh = archive.deployment == "uwsgi-http"
    shape = {"bundle_bytes": total, "files": count, "floors": floors(bundle, work)}
    shape["floors"]["archive_serial_s"] = archive_floor(archive.port, count, size, first_id, 1, fresh)
    if archive.deployment != "cherrypy":
        shape["floors"]["archive_x4_s"] = archive_floor(archive.port, count, size, first_id + count, 4, fresh)
    shape["floors"]["metadata_s"] = metadata_floor(peers.metadata_url, peers.uniqueid_url, count)
    shape["floors"]["policy_s"] = statistics.median(policy_floor(peers.policy_url, count) for _ in range(3))
    samples: dict[str, list[dict]] = {service.name: [] for service in services_}
    failures: dict[str, list[str]] = {}
    for _run in range(runs):
        for service in services_:
            # Each service starts on an idle disk: the previous job's files still being written
            # back slowed whichever service came next (an upload of 50 MiB took 0.08 s or 0.2 s).
            settle(quiet=1.0, longest=20.0)
            sample = service.ingest(bundle)
            if "failed" in sample:
                failures.setdefault(service.name, []).append(sample["failed"])
                logger.warning("%s %s %s: job FAILED in %s", archive.deployment, label, service.name,
                               sample["failed"])
                continue
            samples[service.name].append(sample)
            logger.info("%s %s %s: %.2f s (upload %.2f s)", archive.deployment, label, service.name,
                        sample["end_to_end_s"], sample["upload_s"])
    shape["failures"] = failures
    for name, values in samples.items():
        if not values:
            continue
        e2e = statistics.median(value["end_to_end_s"] for value in values)
        shape[name] = {"end_to_end_s": e2e, "upload_s": statistics.median(value["upload_s"] for value in values),
                       "files_per_s": count / e2e, "mb_per_s": total / e2e / 1e6, "job_id": values[-1]["job_id"],
                       "web_rss_mb": max(value["web_rss_mb"] for value in values),
                       "worker_rss_mb": max(value["worker_rss_mb"] for value in values),
                       "runs": [value["end_to_end_s"] for value in values],
                       "stages_s": {task: statistics.median(value["stages_s"].get(task, 0.0) for value in values)
                                    for task in values[0]["stages_s"]}}
    bundle.unlink()
    return shape


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM (timeout, kill) must still stop the services it started, in the finally below.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shape_arguments(parser, ROOT / "benchmarks" / "results")
    parser.add_argument("--deployments", default=",".join(DEPLOYMENTS),
                        help=f"archive deployments, of {', '.join(DEPLOYMENTS)} (comma-separated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs, shapes = chosen_shapes(args, SHAPES)
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    results: dict = {"machine": machine(), "quick": args.quick, "runs": runs, "command": " ".join(sys.argv),
                     "deployments": {}, "get_state": {}}
    peers = PublishedPeers(work / "peers", "bench").start()
    try:
        for number, deployment in enumerate(args.deployments.split(",")):
            archive = PublishedArchive(work / f"archive-{deployment}", deployment).start()
            services_ = build_services(work, peers, archive, number)
            shapes_done: dict = {}
            try:
                for service in services_:
                    service.start()
                for index, (label, count, size) in enumerate(shapes):
                    shapes_done[label] = run_shape(label, count, size, work, runs, services_, archive, peers,
                                                   2 * 10**9 + number * 10**8 + index * 10**6)
                if number == 0 and shapes_done:
                    for service in services_:
                        job_id = next(iter(shapes_done.values()))[service.name]["job_id"]
                        seconds = 3 if args.quick else 10
                        results["get_state"][service.name] = [state_rate(service.port, job_id, clients, seconds)
                                                              for clients in (1, 16)]
            finally:
                for service in services_:
                    service.stop()
                archive.stop()
            results["deployments"][deployment] = shapes_done
    finally:
        peers.stop()
        # Every run leaves gigabytes in the archives and volumes: nothing of it is kept.
        shutil.rmtree(work, ignore_errors=True)
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
