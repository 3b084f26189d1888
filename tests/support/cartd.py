"""A running cart service for tests: ``pacifica-cartd`` and a Celery worker, as separate processes."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.support import services
from tests.support.procs import BIN, Proc, free_port, wait_for


@dataclasses.dataclass
class CartService:
    url: str
    root: Path
    server: Proc
    worker: Proc

    @property
    def volume(self) -> Path:
        return self.root / "data" / "volume"

    def head(self, uid: str) -> requests.Response:
        return requests.head(f"{self.url}/{uid}", timeout=10)

    def wait_status(self, uid: str, wanted: set[str], timeout: float = 60) -> requests.Response:
        def reached():
            response = self.head(uid)
            return response if response.headers.get("X-Pacifica-Status") in wanted else None

        return wait_for(reached, timeout, f"cart {uid} to be one of {wanted}", interval=0.05)


@contextlib.contextmanager
def cart_service(root: Path, archive_url: str, name: str, concurrency: int = 2,
                 queue: str = "celery", ingest_database: str = "") -> Iterator[CartService]:
    """Start cartd on PostgreSQL database ``name`` and RabbitMQ vhost ``name`` against ``archive_url``,
    its tasks on Celery queue ``queue`` (with ``ingest_database``: the ingest service's database,
    where it reads who owns which file and writes the fixity failures it meets)."""
    port = free_port()
    config = root / "cart.ini"
    config.write_text(
        f"[cartd]\ndata_dir = {root / 'data'}\ntransfer_size = 64 Kb\n"
        + (f"ingest_database = {ingest_database}\n" if ingest_database else "") +
        f"[archiveinterface]\nurl = {archive_url}/\n"
        f"[celery]\nbroker_url = {services.rabbitmq_vhost(name)}\nbackend_url = rpc://\nqueue = {queue}\n"
        f"[database]\npeewee_url = {services.create_postgres_db(name)}\n")
    env = {"CARTD_CONFIG": str(config), "CARTD_CPCONFIG": str(root / "none.ini")}
    server = Proc("cartd", [str(BIN / "pacifica-cartd"), "-p", str(port)], root / "server.log", env=env).start()
    worker = Proc("cartd-worker", [str(BIN / "celery"), "-A", "pacifica.cartd.tasks", "worker", "-c",
                                   str(concurrency), "-l", "INFO", "--without-gossip", "--without-mingle"],
                  root / "worker.log", env=env).start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/", 60)
        worker.wait_log("ready", 60)
        yield CartService(f"http://127.0.0.1:{port}", root, server, worker)
    finally:
        server.stop()
        worker.stop()
