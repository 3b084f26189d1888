"""'ingest files' alone against the archive alone: our client's cost over a bare one.

    .venv/bin/python benchmarks/archive_client.py [--runs N] [--shapes '1000 x 4 KiB,...'] [--deployments ...]

The published archive interface 0.4.2 runs on its defaults in each documented deployment in turn
(its own CherryPy server; uWSGI ``--http-socket``, 4 processes x 1 thread). For each bundle shape,
alternately, ``--runs`` times (medians):

- ``ingest files``: ``pipeline.ingest_files`` in this process, as a worker runs the stage (the
  bundle on disk with the digests its upload would have taken, the ledger, the archive gate,
  the service's HTTP client and settings), without Celery, the job's database or a service;
- ``bare client``: the benchmark's lean ``http.client`` loop (``measure.archive_floor``), PUTting
  the same number and size of files from memory, one at a time.

Both run in one process, one after the other, so the machine's state (this VM's disk and CPU
vary by 2x from one minute to the next) weighs on both alike. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure import MiB, archive_floor  # noqa: E402
from services import make_bundle  # noqa: E402

from pacifica.core.http import make_session  # noqa: E402
from pacifica.ingest.bundles import digests  # noqa: E402
from pacifica.ingest.jobs import pipeline  # noqa: E402
from pacifica.ingest.peers.archive import ArchiveGate, HttpArchive  # noqa: E402
from pacifica.ingest.peers.memory import MemoryUniqueId  # noqa: E402
from pacifica.ingest.volume.spool import Spool  # noqa: E402
from tests.support.published import PublishedArchive  # noqa: E402

SHAPES = {"1000 x 4 KiB": (1000, 4096), "50 x 1 MiB": (50, MiB), "1 x 256 MiB": (1, 256 * MiB),
          "1 x 1 GiB": (1, 1024 * MiB)}
# The service's defaults: [ingest] transfer_size, http_timeout and http_retries.
BLOCK, TIMEOUT, RETRIES = MiB, 60, 3


def hashed_bundle(path: Path, count: int, size: int) -> None:
    """A bundle of ``count`` random files of ``size`` bytes, with the digests an upload takes."""
    make_bundle(path, count, size)
    hasher = digests.StreamHasher()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            hasher.update(block)
    digests.save(hasher, str(path), str(path))


def ingest_files(archive: PublishedArchive, spool: Spool, bundle: Path, job_id: int, uniqueid: MemoryUniqueId) -> float:
    """Seconds 'ingest files' takes for ``bundle`` (its manifest loaded beforehand, untimed)."""
    with pipeline.load_bundle_metadata(job_id, str(bundle), spool, uniqueid) as manifest:
        client = HttpArchive(archive.url, make_session(TIMEOUT, RETRIES), confirm=False,
                             gate=ArchiveGate(os.path.join(spool.volume_path, ".archive.lock")))
        os.sync()
        started = time.perf_counter()
        pipeline.ingest_files(job_id, str(bundle), manifest, client, BLOCK, ledger_path=spool.ledger_path(job_id))
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--deployments", default="cherrypy,uwsgi-http")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="archive-client-", dir=os.environ.get("BENCH_WORK")) as work:
        for deployment in args.deployments.split(","):
            archive = PublishedArchive(Path(work) / deployment, deployment).start()
            try:
                uniqueid = MemoryUniqueId(1_000)
                job_id = 0
                for label in args.shapes.split(","):
                    count, size = SHAPES[label]
                    volume = Path(work) / "volume"
                    volume.mkdir(exist_ok=True)
                    bundle = volume / "bundle.tar"
                    hashed_bundle(bundle, count, size)
                    spool = Spool(str(volume), BLOCK)
                    ours, bare = [], []
                    for _run in range(args.runs):
                        job_id += 1
                        ours.append(ingest_files(archive, spool, bundle, job_id, uniqueid))
                        os.sync()
                        bare.append(archive_floor(archive.port, count, size, 10_000_000 + 10_000 * job_id, 1,
                                                  fresh=deployment != "cherrypy"))
                    rows.append((deployment, label, statistics.median(ours), statistics.median(bare), args.runs))
                    shutil.rmtree(volume)
                    shutil.rmtree(archive.prefix)
                    archive.prefix.mkdir()
            finally:
                archive.stop()
    print("| deployment | shape | ingest files | bare client | ratio | runs |")
    print("|---|---|---|---|---|---|")
    for deployment, label, ours_s, bare_s, runs in rows:
        print(f"| {deployment} | {label} | {ours_s:.3f} s | {bare_s:.3f} s | {ours_s / bare_s:.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
