"""What a fixity audit costs, and what it costs the ingest it runs beside.

    .venv/bin/python benchmarks/fixity.py [--files 16] [--size-mib 128] [--ingest-mib 256] [--out DIR]

The embedded service (no configuration, a fresh data directory) archives ``--files`` files of
``--size-mib`` MiB; then, in the same run:

- ``audit``: ``pacifica-ingest-cmd fixity --all --rate 0`` reads them all back, with the page
  cache warm and (as root) dropped first; its wall time and its CPU time (user + system of the
  command) give MB/s and MB/s per core. The same with ``[fixity] second_digest`` off (SHA-1 only).
- ``floor``: this machine reading the same files and hashing them (SHA-1, and SHA-1 + SHA-256),
  nothing else: the baseline measured in the same run.
- ``beside ingest``: a bundle of ``--ingest-mib`` MiB ingested alone, then while an unlimited
  audit runs, then while an audit at ``[fixity] rate``'s default (50MB/s) runs (the page cache
  dropped before each, as root: the audit reads from the disk); the ratios say what an audit
  costs the ingest beside it.

Results go to ``<out>/fixity.md`` and ``fixity.json``, with the date, commit and command.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from embedded import settle, upload, write_bundle  # noqa: E402

from tests.support.procs import BIN, Proc, free_port, wait_for  # noqa: E402

MiB = 1024 * 1024


def drop_caches() -> bool:
    """Empty the page cache (root only): an audit reads years-old files from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def ingest(port: int, bundle: Path) -> float:
    """Seconds from the first byte of ``bundle`` to its job's completion."""
    started = time.perf_counter()
    job_id = upload(port, bundle)["job_id"]
    while not requests.get(f"http://127.0.0.1:{port}/get_state", params={"job_id": job_id},
                           timeout=60).json()["complete"]:
        time.sleep(0.02)
    return time.perf_counter() - started


def audit(env: dict[str, str], rate: str = "0", wait: bool = True, older_than: str = "") -> dict | subprocess.Popen:
    """Run ``fixity --all`` (to its end: its report, wall and CPU seconds; else the process);
    with ``older_than``, ``--older-than`` instead (nothing due: the command's own cost)."""
    which = ["--older-than", older_than] if older_than else ["--all"]
    argv = [str(BIN / "pacifica-ingest-cmd"), "fixity", *which, "--json", "--rate", rate]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    if not wait:
        return process
    out, err = process.communicate()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"fixity failed ({process.returncode}): {err[-2000:]}")
    report = json.loads(out)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "bytes": report["bytes"], "files": report["checked"],
            "mb_s": report["bytes"] / wall / 1e6, "mb_s_per_core": report["bytes"] / cpu / 1e6,
            "audit_s": report["seconds"]}


def floor(paths: list[Path], modern: bool) -> float:
    """Seconds for this machine to read ``paths`` and hash them (SHA-1, and SHA-256 with ``modern``)."""
    started = time.perf_counter()
    buffer = bytearray(MiB)
    view = memoryview(buffer)
    for path in paths:
        digests = [hashlib.sha1(), *([hashlib.sha256()] if modern else [])]
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                for digest in digests:
                    digest.update(view[:count])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--ingest-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3, help="rounds of the ingest measurements (medians)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pacifica-fixity-bench-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    archived_bundle, ingest_bundle = work / "archived.tar", work / "ingest.tar"
    write_bundle(archived_bundle, args.files, args.size_mib * MiB)
    write_bundle(ingest_bundle, 1, args.ingest_mib * MiB)
    data = work / "service"
    data.mkdir()
    env = {"HOME": str(data), "INGEST_DATA_DIR": str(data / "data")}
    port = free_port()
    server = Proc("fixity-bench", [str(BIN / "pacifica-ingest"), "-p", str(port)], data / "server.log",
                  env=env).start()
    results: dict = {}
    try:
        server.wait_http(f"http://127.0.0.1:{port}/", 60)
        wait_for(lambda: " ready." in server.log(), 60, "the embedded worker")
        ingest(port, archived_bundle)
        archive = data / "data" / "archive"
        paths = [path for path in archive.iterdir() if path.is_file()]
        total = sum(path.stat().st_size for path in paths)
        settle()
        results["floor_sha1_warm_s"] = floor(paths, modern=False)
        results["floor_both_warm_s"] = floor(paths, modern=True)
        # SHA-1 only first: once a file has a SHA-256, every later check compares it too.
        results["audit_sha1_only_warm"] = audit({**env, "FIXITY_SECOND_DIGEST": "false"})
        results["audit_warm"] = audit(env)
        results["audit_nothing"] = audit(env, older_than="3650d")
        results["cold"] = drop_caches()
        if results["cold"]:
            results["floor_both_cold_s"] = floor(paths, modern=True)
            drop_caches()
            results["audit_cold"] = audit(env)
        # Alone and beside each audit in turn, ``--runs`` rounds (medians): one run each is noise.
        times: dict[str, list[float]] = {"ingest_alone_s": [], "ingest_beside_unlimited_s": [],
                                         "ingest_beside_50MBs_s": []}
        for _round in range(args.runs):
            for label, rate in (("ingest_alone_s", None), ("ingest_beside_unlimited_s", "0"),
                                ("ingest_beside_50MBs_s", "50MB/s")):
                settle()
                drop_caches()  # the audit reads from the disk, as it would years-old files
                running = audit(env, rate, wait=False) if rate is not None else None
                if running is not None:
                    time.sleep(1.0)  # past the command's start: the audit is reading
                times[label].append(ingest(port, ingest_bundle))
                if running is not None:
                    if running.poll() is not None:
                        raise RuntimeError(f"the audit ended before the ingest did ({label}): make it longer")
                    running.send_signal(signal.SIGTERM)
                    running.communicate()
        results.update({label: statistics.median(values) for label, values in times.items()})
        results["ingest_runs"] = times
        results["total_bytes"] = total
    finally:
        server.stop(signal.SIGTERM)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "benchmarks/fixity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    warm, sha1_only = results["audit_warm"], results["audit_sha1_only_warm"]
    mb = results["total_bytes"] / 1e6
    lines = [f"Fixity audit, {stamp}, commit {commit}: `{command}` ({args.files} x {args.size_mib} MiB)", "",
             "| what | seconds | MB/s | MB/s per core | against the floor |", "|---|---|---|---|---|",
             f"| floor: read + SHA-1 (warm cache) | {results['floor_sha1_warm_s']:.2f} | "
             f"{mb / results['floor_sha1_warm_s']:.0f} | | 1.00 |",
             f"| floor: read + SHA-1 + SHA-256 (warm cache) | {results['floor_both_warm_s']:.2f} | "
             f"{mb / results['floor_both_warm_s']:.0f} | | 1.00 |",
             f"| audit, SHA-1 only (warm) | {sha1_only['wall_s']:.2f} | {sha1_only['mb_s']:.0f} | "
             f"{sha1_only['mb_s_per_core']:.0f} | {sha1_only['wall_s'] / results['floor_sha1_warm_s']:.2f} |",
             f"| audit, SHA-1 + SHA-256 (warm) | {warm['wall_s']:.2f} | {warm['mb_s']:.0f} | "
             f"{warm['mb_s_per_core']:.0f} | {warm['wall_s'] / results['floor_both_warm_s']:.2f} |",
             f"| the command alone (nothing due) | {results['audit_nothing']['wall_s']:.2f} | | | |"]
    if results["cold"]:
        cold = results["audit_cold"]
        lines.append(f"| audit, SHA-1 + SHA-256 (cache dropped) | {cold['wall_s']:.2f} | {cold['mb_s']:.0f} | "
                     f"{cold['mb_s_per_core']:.0f} | {cold['wall_s'] / results['floor_both_cold_s']:.2f} "
                     f"(floor {results['floor_both_cold_s']:.2f} s) |")
    alone = results["ingest_alone_s"]
    lines += ["", "Wall and CPU time count the whole command (start-up, database, the audit). The audit alone "
              f"(its report's own time, warm, both digests) took {warm['audit_s']:.2f} s.",
              "", f"Ingest of a {args.ingest_mib} MiB bundle (first byte to complete) beside an audit, medians of "
              f"{args.runs}:", "",
              "| ingest | seconds | against alone |", "|---|---|---|",
              f"| alone | {alone:.2f} | 1.00 |",
              f"| beside an audit at no limit (`--rate 0`) | {results['ingest_beside_unlimited_s']:.2f} | "
              f"{results['ingest_beside_unlimited_s'] / alone:.2f} |",
              f"| beside an audit at 50MB/s (the default) | {results['ingest_beside_50MBs_s']:.2f} | "
              f"{results['ingest_beside_50MBs_s'] / alone:.2f} |"]
    (out / "fixity.md").write_text("\n".join(lines) + "\n")
    (out / "fixity.json").write_text(json.dumps({"date": stamp, "commit": commit, **results}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
