"""Side-by-side benchmark of cartd: this repository's and the published pacifica-cartd 0.7.0.

    .venv/bin/python benchmarks/cartd.py [--quick] [--runs N] [--shapes 'GiB,4 KiB'] [--out DIR]

Both run as the seed deploys them (``pacifica-cartd`` and a separate Celery worker, 2 processes)
on the same archive interface, the published 0.4.2, in each of its documented deployments in turn
(``cherrypy``, its default: its own CherryPy server; ``uwsgi-http``: uWSGI ``--http-socket``, 4
processes x 1 thread), each with its own RabbitMQ vhost and PostgreSQL database, and
``bundle_task`` off (the tar is streamed while it is downloaded). A cart that ends in error is
recorded with its reason, and the run goes on. The published one is installed from PyPI in a throwaway
virtualenv. For each shape and run, a cart of the shape's files is made in each service in turn:

- seconds from the POST to the cart's ``ready`` (staging: HEAD, POST, pull with hash check);
- the download rate of the whole tar (MB/s, read by a client on the same machine);
- the peak RSS of the web server and of the worker (all its processes), in MB.

Floors in the same run: "archive GET" (a lean client GETs the same files from the archive to
disk, one at a time), "archive HEAD+GET" (the same with the HEAD a cart needs before each file:
its size, and whether it is on disk or tape) and "cp" (the archive's own files copied on the same
disk).
Results go to ``<out>/cartd.md`` and ``cartd.json``; the work directory is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
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

from measure import chosen_shapes, peak_rss_mb, process_tree, reset_peak, shape_arguments, timed  # noqa: E402
from run import machine  # noqa: E402

from pacifica.core.http import make_session  # noqa: E402
from pacifica.ingest.peers.archive import HttpArchive  # noqa: E402
from tests.support import services  # noqa: E402
from tests.support.legacy import legacy_venv  # noqa: E402
from tests.support.procs import BIN, Proc, free_port, wait_for  # noqa: E402
from tests.support.published import PublishedArchive  # noqa: E402

logger = logging.getLogger("cartd-bench")
KiB, MiB, GiB = 1024, 1024**2, 1024**3
SHAPES = {
    "full": [("1 x 1 GiB", 1, GiB), ("100 x 10 MiB", 100, 10 * MiB), ("2000 x 4 KiB", 2000, 4 * KiB)],
    "quick": [("1 x 64 MiB", 1, 64 * MiB), ("20 x 1 MiB", 20, MiB), ("200 x 4 KiB", 200, 4 * KiB)],
}
PUBLISHED = Path.home() / ".cache" / "pacifica-ingest-tests" / "cartd-0.7.0"
# The CherryPy config of the two cartd services compared: only the address, the port and the
# seed's dispatcher. Each runs its server on its own defaults (0.7.0: CherryPy's 10 threads; ours:
# its built-in 32 threads and 300 s socket timeout), as each is installed; the peer, the archive
# interface, runs with its own defaults too (tests/support/published.py).
CPCONFIG = """[global]
log.screen: False
server.socket_host: '127.0.0.1'
server.socket_port: {port}

[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
tools.response_headers.on: True
tools.response_headers.headers: [('Content-Type', 'application/json')]
"""


class CartService:
    """One cartd (web server and Celery worker) with its own config, database, vhost and volume."""

    def __init__(self, name: str, bin_dir: Path, root: Path, archive_url: str) -> None:
        self.name = name
        self.bin = bin_dir
        self.root = root
        self.port = free_port()
        self.archive_url = archive_url
        self.procs: list[Proc] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        slug = "".join(char for char in self.name if char.isalnum())
        config = self.root / "cart.ini"
        config.write_text(
            f"[cartd]\nvolume_path = {self.root / 'volume'}/\nlru_buffer_time = 0\nbundle_task = False\n"
            f"[archiveinterface]\nurl = {self.archive_url}/\n"
            f"[celery]\nbroker_url = {services.rabbitmq_vhost(f'pacifica_cartd_bench_{slug}')}\nbackend_url = rpc://\n"
            f"[database]\npeewee_url = {services.create_postgres_db(f'pacifica_cartd_bench_{slug}')}\n")
        cpconfig = self.root / "cp.ini"
        cpconfig.write_text(CPCONFIG.format(port=self.port))
        env = {"CARTD_CONFIG": str(config), "CARTD_CPCONFIG": str(cpconfig), "HOME": str(self.root),
               "VOLUME_PATH": f"{self.root / 'volume'}/"}
        subprocess.run([str(self.bin / "pacifica-cartd-cmd"), "dbsync"], env={**os.environ, **env}, check=True,
                       capture_output=True, timeout=300)
        server = Proc(f"{self.name}-web", [str(self.bin / "pacifica-cartd"), "-c", str(config), "--cpconfig",
                                           str(cpconfig), "-a", "127.0.0.1", "-p", str(self.port)],
                      self.root / "web.log", env=env).start()
        worker = Proc(f"{self.name}-worker", [str(self.bin / "celery"), "-A", "pacifica.cartd.tasks", "worker",
                                              "-c", "2", "-l", "WARNING", "--without-gossip", "--without-mingle",
                                              "-n", f"bench-{slug}-{os.getpid()}@%h"],
                      self.root / "worker.log", env=env).start()
        self.procs = [server, worker]
        server.wait_http(self.url + "/", 60)
        time.sleep(3)  # the worker connects to its vhost

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def trees(self) -> tuple[list[int], list[int]]:
        return process_tree(self.procs[0].popen.pid), process_tree(self.procs[1].popen.pid)


def put_files(archive: PublishedArchive, first_id: int, count: int, size: int) -> list[dict]:
    """Archive ``count`` random files of ``size`` bytes; return the cart's fileids for them."""
    client = HttpArchive(archive.url, make_session(600, 3))
    fileids = []
    for number in range(count):
        digest = hashlib.sha1()
        blocks = []
        for offset in range(0, size, 4 * MiB):
            block = os.urandom(min(4 * MiB, size - offset))
            digest.update(block)
            blocks.append(block)
        client.put(first_id + number, blocks, size, 1_600_000_000)
        fileids.append({"id": str(first_id + number), "path": f"d{number // 1000}/f{number}.bin",
                        "hashtype": "sha1", "hashsum": digest.hexdigest()})
    return fileids


def one_cart(service: CartService, uid: str, fileids: list[dict], total: int, patience: float) -> dict:
    """Make a cart, wait (up to ``patience`` seconds) until it is ready, download it; return the
    times and the peak RSS, or why it failed."""
    web, worker = service.trees()
    reset_peak(web + worker)
    started = time.perf_counter()
    created = requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=120)
    assert created.status_code == 201, created.text

    def ready():
        head = requests.head(f"{service.url}/{uid}", timeout=60)
        status = head.headers.get("X-Pacifica-Status")
        if status == "error":
            raise AssertionError(f"{service.name}: cart {uid} failed: {head.headers.get('X-Pacifica-Message')}")
        return status == "ready"

    try:
        wait_for(ready, patience, f"{service.name} cart {uid} to be ready", interval=0.05)
    except AssertionError as exc:
        requests.delete(f"{service.url}/{uid}", timeout=120)
        return {"failed": str(exc)[:300]}
    ready_s = time.perf_counter() - started
    got, began = 0, time.perf_counter()
    with requests.get(f"{service.url}/{uid}", stream=True, timeout=600) as response:
        assert response.status_code == 200, response.status_code
        for chunk in response.iter_content(1 * MiB):
            got += len(chunk)
    download_s = time.perf_counter() - began
    assert got >= total, f"{service.name}: the tar has {got} bytes, the files {total}"
    web, worker = service.trees()
    result = {"ready_s": ready_s, "download_mb_s": got / download_s / 1e6,
              "web_rss_mb": max(peak_rss_mb(pid) for pid in web),
              "worker_rss_mb": sum(peak_rss_mb(pid) for pid in worker)}
    requests.delete(f"{service.url}/{uid}", timeout=120)
    return result


def _get_all(archive: PublishedArchive, fileids: list[dict], target: Path, head: bool) -> float:
    """Seconds to GET every file to disk, one at a time (each after a HEAD if ``head``)."""
    target.mkdir()
    session = make_session(600, 3, read_retries=2)
    os.sync()
    started = time.perf_counter()
    for item in fileids:
        if head:
            session.head(f"{archive.url}/{item['id']}").raise_for_status()
        with session.get(f"{archive.url}/{item['id']}", stream=True) as response, \
                open(target / item["id"], "wb") as out:
            response.raise_for_status()
            out.writelines(response.iter_content(4 * MiB))
    seconds = time.perf_counter() - started
    shutil.rmtree(target)
    return seconds


def floors(archive: PublishedArchive, fileids: list[dict], work: Path) -> dict:
    """The archive alone (GET each file to disk, one at a time), the same with a HEAD before each
    GET (the status a cart needs: size, and disk or tape), and cp of the archive's files."""
    archive_s = _get_all(archive, fileids, work / "floor", head=False)
    head_get_s = _get_all(archive, fileids, work / "floor", head=True)
    target = work / "floor"
    target.mkdir()
    os.sync()
    cp_s = timed(["cp", *[str(archive.file(int(item["id"]))) for item in fileids], str(target)])
    shutil.rmtree(target)
    return {"archive_alone_s": archive_s, "archive_head_get_s": head_get_s, "cp_s": cp_s}


def run_shape(label: str, count: int, size: int, runs: int, archive: PublishedArchive,
              services_: list[CartService], first_id: int, work: Path) -> dict:
    logger.info("%s: archiving the files", label)
    fileids = put_files(archive, first_id, count, size)
    shape: dict = {"floors": floors(archive, fileids, work)}
    logger.info("%s floors: %s", label, shape["floors"])
    # A cart that is not ready long after the archive alone could have served it is stuck.
    patience = 60 + 30 * shape["floors"]["archive_alone_s"]
    for service in services_:
        results = []
        for run in range(runs):
            results.append(one_cart(service, f"{service.name.replace(' ', '')}-{first_id}-{run}", fileids,
                                    count * size, patience))
            if "failed" in results[-1]:
                break  # a service that failed a shape once is not made to fail it again
        values = [value for value in results if "failed" not in value]
        failures = [value["failed"] for value in results if "failed" in value]
        if not values:
            shape[service.name] = {"failed": failures[0], "failures": len(failures)}
            logger.info("%s %s: every cart failed: %s", label, service.name, failures[0])
            continue
        shape[service.name] = {key: statistics.median(value[key] for value in values)
                               for key in ("ready_s", "download_mb_s")}
        shape[service.name]["failures"] = len(failures)
        for key in ("web_rss_mb", "worker_rss_mb"):
            shape[service.name][key] = max(value[key] for value in values)
        shape[service.name]["runs"] = [round(value["ready_s"], 3) for value in values]
        logger.info("%s %s: %s", label, service.name, shape[service.name])
    for item in fileids:
        archive.file(int(item["id"])).unlink(missing_ok=True)
    return shape


def _row(label: str, shape: dict) -> str:
    old, new, floor = shape["0.7.0"], shape["ours"], shape["floors"]
    if "failed" in old or "failed" in new:
        def said(value: dict) -> str:
            if "failed" in value:
                return f"failed ({value['failures']} of {value['failures']}): {value['failed'][:120]}"
            return f"{value['ready_s']:.2f} s, {value['download_mb_s']:.0f} MB/s"
        return f"| {label} | 0.7.0: {said(old)} | ours: {said(new)} | | | | | |"
    return (
            f"| {label} | {old['ready_s']:.2f} / {new['ready_s']:.2f} | {old['ready_s'] / new['ready_s']:.2f}x "
            f"| {floor['archive_alone_s']:.2f} / {floor.get('archive_head_get_s', 0):.2f} / {floor['cp_s']:.2f} "
            f"| {new['ready_s'] / floor['archive_alone_s']:.2f} "
            f"| {old['download_mb_s']:.0f} / {new['download_mb_s']:.0f} "
            f"| {old['web_rss_mb']:.0f} / {new['web_rss_mb']:.0f} "
            f"| {old['worker_rss_mb']:.0f} / {new['worker_rss_mb']:.0f} |")


def report(results: dict) -> str:
    lines = [f"Command: `{results['command']}`, {results['runs']} runs per shape (medians); machine: "
             f"{results['machine']['cores']} cores, {results['machine']['cpu']}."]
    for deployment, shapes in results["deployments"].items():
        lines += ["", f"**archive interface: {deployment}**", "",
                  "| shape | POST to ready, 0.7.0 / ours (s) | speed-up | archive GET / HEAD+GET / cp (s) "
                  "| ours / archive GET | download MB/s, 0.7.0 / ours | peak RSS web, 0.7.0 / ours (MB) "
                  "| peak RSS worker, 0.7.0 / ours (MB) |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [_row(label, shape) for label, shape in shapes.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shape_arguments(parser, ROOT / "benchmarks" / "results")
    parser.add_argument("--deployments", default="cherrypy,uwsgi-http",
                        help="archive deployments, of cherrypy, uwsgi-http (comma-separated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs, shapes = chosen_shapes(args, SHAPES)
    published = legacy_venv(PUBLISHED, "pacifica-cartd==0.7.0", "peewee<4", "psycopg2-binary") / "bin"
    work = Path(tempfile.mkdtemp(prefix="cartd-bench-"))
    results: dict = {"machine": machine(), "runs": runs, "command": " ".join(["benchmarks/cartd.py", *sys.argv[1:]]),
                     "deployments": {}}
    try:
        for number, deployment in enumerate(args.deployments.split(",")):
            root = work / deployment
            archive = PublishedArchive(root / "archive", deployment).start()
            services_ = [CartService("0.7.0", published, root / "published", archive.url),
                         CartService("ours", BIN, root / "ours", archive.url)]
            done: dict = {}
            try:
                for service in services_:
                    service.start()
                for index, (label, count, size) in enumerate(shapes):
                    done[label] = run_shape(label, count, size, runs, archive, services_,
                                            3 * 10**9 + number * 10**8 + index * 10**6, root)
            finally:
                for service in services_:
                    service.stop()
                archive.stop()
                shutil.rmtree(root, ignore_errors=True)
            results["deployments"][deployment] = done
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cartd.json").write_text(json.dumps(results, indent=2))
    table = report(results)
    (out / "cartd.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
