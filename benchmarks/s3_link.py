"""The S3 door beside tus through the same emulated long link: boto3's multipart upload with 1, 4
and 8 concurrent parts against tus-js-client with as many parallel uploads.

    .venv/bin/python benchmarks/s3_link.py [--size-mib 1024] [--streams 1,4,8] [--out DIR]

The link is ``tus_link.Link`` (``--delay-ms`` each way, ``--rate-mbps`` per connection). Each
client sends the same bundle to a fresh embedded service of this checkout (the worker off: the
upload alone is measured): tus-js-client with ``parallelUploads`` N and 64 MiB chunks, and boto3's
``upload_file`` with ``max_concurrency`` N and 64 MiB parts, its default checksum (CRC32), to the
door on ``--s3-port`` over plain HTTP. The time runs from the client's start to its last answer
(the final concatenation, or ``CompleteMultipartUpload``). The baseline is tus-js-client with
the same number of streams, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import boto3  # noqa: E402 - the repository root is on the path first
from boto3.s3.transfer import TransferConfig  # noqa: E402
from tus_link import Link, cpu_seconds, service_env, start_service  # noqa: E402
from tus_link import run as run_tus  # noqa: E402

from tests.support.procs import BIN, free_port, run  # noqa: E402

MiB = 1 << 20


def run_boto3(bundle: Path, streams: list[int], delay_ms: float, rate_mbps: float, work: Path) -> dict:
    """boto3 through the link to the S3 door: seconds and CPU for each number of streams."""
    size = bundle.stat().st_size
    results = {}
    for parallel in streams:
        data = work / f"s3-{parallel}"
        port, s3_port = free_port(), free_port()
        made = run([str(BIN / "pacifica-ingest-cmd"), "token", "create", "--user", "bench", "--s3"],
                   env=service_env(data), timeout=120)
        keys = dict(line.split("=", 1) for line in made.stdout.split())
        server = start_service(data, f"s3-link-{parallel}", port, "--s3-port", str(s3_port))
        link = None
        try:
            link = Link(s3_port, delay_ms / 1000, rate_mbps * 1e6).start()
            client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{link.port}", region_name="us-east-1",
                                  aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
            config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=64 * MiB,
                                    max_concurrency=parallel, use_threads=parallel > 1)
            server_cpu, client_cpu = cpu_seconds(server.popen.pid), time.process_time()
            started = time.monotonic()
            client.upload_file(str(bundle), "ingest", "bench/bundle.tar", Config=config)
            took = time.monotonic() - started
            results[parallel] = {"seconds": round(took, 2), "mb_per_s": round(size / took / 1e6, 1),
                                 "service_cpu_s": round(cpu_seconds(server.popen.pid) - server_cpu, 1),
                                 "client_and_link_cpu_s": round(time.process_time() - client_cpu, 1)}
            print(json.dumps({"boto3": {parallel: results[parallel]}}), flush=True)
        finally:
            if link is not None:
                link.stop()
            server.stop()
            shutil.rmtree(data / "data", ignore_errors=True)
    return results


def table(tus: dict, s3: dict) -> str:
    """The comparison table."""
    lines = [f"{tus['size_bytes'] / MiB:.0f} MiB through {tus['delay_ms']:g} ms each way, "
             f"{tus['rate_mb_per_s']:g} MB/s per connection:", "",
             "| streams | tus-js-client | boto3 (S3 door) | boto3 / tus | boto3 throughput | service CPU s: tus / S3 |",
             "|---|---|---|---|---|---|"]
    for streams, boto in s3.items():
        tus_run = tus["runs"][streams]
        lines.append(f"| {streams} | {tus_run['seconds']:.1f} s | {boto['seconds']:.1f} s | "
                     f"{boto['seconds'] / tus_run['seconds']:.2f} | {boto['mb_per_s']:.0f} MB/s | "
                     f"{tus_run['service_cpu_s']:.1f} / {boto['service_cpu_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--delay-ms", type=float, default=40)
    parser.add_argument("--rate-mbps", type=float, default=20)
    parser.add_argument("--out", default=None, help="directory for results.json and table.md")
    args = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    streams = [int(n) for n in args.streams.split(",")]
    with tempfile.TemporaryDirectory(prefix="s3-link-") as work:
        tus = run_tus(args.size_mib, streams, args.delay_ms, args.rate_mbps, Path(work))
        s3 = run_boto3(Path(work) / "bundle.tar", streams, args.delay_ms, args.rate_mbps, Path(work))
    text = table(tus, s3)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "results.json").write_text(json.dumps({"tus": tus, "s3": s3}, indent=2))
        Path(args.out, "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
