"""What the benchmark measures besides job times: floors, memory, get_state rates, the archive's limit."""

from __future__ import annotations

import datetime
import http.client
import multiprocessing
import os
import subprocess
import threading
import time
from pathlib import Path

import requests

MiB = 1024 * 1024


def timed(argv: list[str]) -> float:
    """Seconds ``argv`` takes to run."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def floors(bundle: Path, work: Path) -> dict:
    """The same disk's floors for this bundle: cp, cp + sync, sha1sum and tar -x."""
    os.sync()
    copy = work / "floor-copy.tar"
    cp = timed(["cp", str(bundle), str(copy)])
    cp_sync = cp + timed(["sync"])
    copy.unlink()
    sha1sum = timed(["sha1sum", str(bundle)])
    extract = work / "floor-extract"
    extract.mkdir()
    tar_x = timed(["tar", "-xf", str(bundle), "-C", str(extract)])
    subprocess.run(["rm", "-rf", str(extract)], check=True)
    os.sync()
    return {"cp_s": cp, "cp_sync_s": cp_sync, "sha1sum_s": sha1sum, "tar_x_s": tar_x}


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += _children(current)
    return tree


def reset_peak(pids: list[int]) -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of each process."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass


def peak_rss_mb(pid: int) -> float:
    """The peak resident set of ``pid`` since its last reset, in MB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


def _state_client(port: int, path: str, threads: int, seconds: float) -> list[float]:
    """Poll ``path`` from ``threads`` keep-alive connections for ``seconds``; return the latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < stop_at:
            begun = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status}")
            mine.append(time.perf_counter() - begun)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def state_rate(port: int, job_id: int | None, clients: int, seconds: float) -> dict:
    """get_state requests per second from ``clients`` keep-alive clients, with p50 and p99.

    With ``job_id`` None the clients ask for ``/`` instead: the web framework's own rate, with no
    database behind it.

    The clients run in up to two processes of their own (this machine has two cores), so the
    benchmark's own peers and interpreter lock do not limit them.
    """
    processes = min(2, clients)
    path = "/" if job_id is None else f"/get_state?job_id={job_id}"
    split = [clients // processes + (1 if index < clients % processes else 0) for index in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.starmap(_state_client, [(port, path, threads, seconds) for threads in split])
    latencies = sorted(latency for part in parts for latency in part)
    return {"clients": clients, "rps": len(latencies) / seconds, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def archive_floor(port: int, count: int, size: int, first_id: int, connections: int = 1,
                  fresh: bool = False) -> float:
    """Seconds a lean client takes to PUT ``count`` files of ``size`` bytes to the archive
    interface over ``connections`` connections: the floor of 'ingest files' over HTTP. With
    ``fresh``, every PUT opens its own connection (for a server that closes each one)."""
    block = os.urandom(min(size, MiB)) or b""

    def put(connection: http.client.HTTPConnection, file_id: int) -> None:
        connection.putrequest("PUT", f"/{file_id}")
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(size))
        connection.putheader("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
        connection.endheaders()
        left = size
        while left:
            piece = block[:left]
            connection.send(piece)
            left -= len(piece)
        response = connection.getresponse()
        response.read()
        if response.status != 201:
            raise RuntimeError(f"archive PUT: HTTP {response.status}")

    def sender(file_ids: list[int]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for file_id in file_ids:
            put(connection, file_id)
            if fresh:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.close()

    ids = list(range(first_id, first_id + count))
    senders = [threading.Thread(target=sender, args=(ids[index::connections],)) for index in range(connections)]
    started = time.perf_counter()
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    return time.perf_counter() - started


def _document(job_id: int, first_file_id: int, count: int) -> list[dict]:
    """A transaction of ``count`` files in the published services' test data (project 1234a,
    instrument 54, submitter 10)."""
    document = [{"destinationTable": "Transactions._id", "value": job_id},
                {"destinationTable": "Transactions.submitter", "value": 10},
                {"destinationTable": "Transactions.project", "value": "1234a"},
                {"destinationTable": "Transactions.instrument", "value": 54}]
    return document + [{"destinationTable": "Files", "_id": first_file_id + number, "name": f"f{number}.bin",
                        "subdir": "d", "size": 1, "hashtype": "sha1", "hashsum": "0" * 40, "mimetype": "text/plain",
                        "ctime": "2020-01-01T00:00:00", "mtime": "2020-01-01T00:00:00"} for number in range(count)]


def metadata_floor(metadata_url: str, uniqueid_url: str, count: int) -> float:
    """Seconds the metadata service takes to record a transaction of ``count`` files, sent by a
    lean client (fresh ids from uniqueid): the floor of 'ingest metadata'."""
    job = requests.get(uniqueid_url + "/getid", params={"range": 1, "mode": "upload_job"}, timeout=60).json()
    first = requests.get(uniqueid_url + "/getid", params={"range": count, "mode": "file"}, timeout=60).json()
    document = _document(job["startIndex"], first["startIndex"], count)
    started = time.perf_counter()
    answer = requests.put(metadata_url, json=document, timeout=600)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"metadata PUT: HTTP {answer.status_code}: {answer.text[:300]}")
    return elapsed


def policy_floor(policy_url: str, count: int, user: str = "10", header: str = "X-Http-Authed-User") -> float:
    """Seconds the policy service takes to accept a transaction of ``count`` files for ``user``,
    asked by a lean client: the floor of 'Policy Validation', which every ingest must ask before
    a byte is archived (the serial floor leaves it out)."""
    document = _document(1, 1, count)
    started = time.perf_counter()
    answer = requests.post(policy_url, json=document, headers={header: user}, timeout=600)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200 or answer.json().get("status") != "success":
        raise RuntimeError(f"policy POST: HTTP {answer.status_code}: {answer.text[:300]}")
    return elapsed


def archive_limit(port: int, count: int, first_id: int, connections: int, confirm: bool = False) -> float:
    """PUTs of 4 KiB per second the archive interface takes from a lean client (no hashing, no
    reading); with ``confirm``, each PUT followed by the HEAD that checks what was stored."""
    body = os.urandom(4096)
    headers = {"Content-Type": "application/octet-stream", "Last-Modified": "Sun, 06 Nov 1994 08:49:37 GMT"}

    def sender(start: int, number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for file_id in range(start, start + number):
            connection.request("PUT", f"/{file_id}", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"archive PUT: HTTP {response.status}")
            if confirm:
                connection.request("HEAD", f"/{file_id}")
                connection.getresponse().read()
        connection.close()

    share = count // connections
    senders = [threading.Thread(target=sender, args=(first_id + index * share, share)) for index in range(connections)]
    started = time.perf_counter()
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    return share * connections / (time.perf_counter() - started)


def shape_arguments(parser, out: Path) -> None:
    """The options every benchmark takes: --quick, --runs, --shapes and --out."""
    parser.add_argument("--quick", action="store_true", help="small shapes, finishes in a few minutes")
    parser.add_argument("--runs", type=int, default=None, help="runs per shape and service (default 3, quick 2)")
    parser.add_argument("--shapes", default=None, help="only the shapes whose label contains one of these "
                                                        "(comma-separated), e.g. 'GiB,4 KiB'")
    parser.add_argument("--out", default=str(out), help="where results go")


def chosen_shapes(args, shapes: dict) -> tuple[int, list]:
    """(runs, shapes) that the options of ``shape_arguments`` ask for, out of ``shapes`` (full, quick)."""
    runs = args.runs or (2 if args.quick else 3)
    chosen = shapes["quick" if args.quick else "full"]
    if args.shapes:
        wanted = [part.strip() for part in args.shapes.split(",")]
        chosen = [shape for shape in chosen if any(part in shape[0] for part in wanted)]
    return runs, chosen


def stage_spans(history: list[tuple[str, datetime.datetime]]) -> dict[str, float]:
    """Seconds from each stage's first event to the next stage's first event (the last stage's
    to the job's last event), from a job's history as (task, time) rows in order."""
    starts: list[tuple[str, datetime.datetime]] = []
    for task, moment in history:
        if not starts or starts[-1][0] != task:
            starts.append((task, moment))
    ends = [moment for _task, moment in starts[1:]] + ([history[-1][1]] if history else [])
    return {task: round((end - start).total_seconds(), 3) for (task, start), end in zip(starts, ends, strict=True)}
