"""A cart made from the ingest service's embedded archive (``embedded:``) or a ``file://`` archive:
the same worker code, reading archived files straight from the local disk."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import tarfile

import pytest
import requests

from pacifica.cartd.app import bootstrap as cart_bootstrap
from pacifica.cartd.common.settings import load_settings
from pacifica.cartd.compat.orm import DB, Cart, File, OrmSync
from pacifica.cartd.jobs.celery_app import CART_APP
from pacifica.cartd.peers.archive import LocalArchiveRequests, archive_for
from pacifica.cartd.tasks import build_cart
from pacifica.cartd.utils import Cartutils
from pacifica.core.database import make_database
from pacifica.ingest.config import load_settings as ingest_settings
from pacifica.ingest.peers.local_archive import LocalArchive
from tests.support.procs import BIN, Proc, free_port, wait_for


@pytest.fixture
def ingest_archive(tmp_path, monkeypatch):
    """Files archived by the ingest service's embedded archive, in its data directory."""
    monkeypatch.setenv("INGEST_DATA_DIR", str(tmp_path / "ingest"))
    (tmp_path / "ingest.ini").write_text("")
    monkeypatch.setenv("INGEST_CONFIG", str(tmp_path / "ingest.ini"))
    monkeypatch.delenv("ARCHIVEINTERFACE_URL", raising=False)
    archive = LocalArchive(ingest_settings().data_path("archive"))
    files = {}
    for file_id in (101, 102):
        data = os.urandom(100_000 + file_id)
        archive.put(file_id, [data], len(data), 1_500_000_000)
        files[file_id] = data
    archive.make_durable(files)
    return archive, files


@pytest.fixture
def cart_runtime_on(tmp_path):
    previous = (CART_APP.runtime() if CART_APP.has_runtime() else None, DB.obj)

    def configure(archive_url: str):
        (tmp_path / "cart.ini").write_text("")
        environ = {"CARTD_DATA_DIR": str(tmp_path / "cart"), "ARCHIVE_INTERFACE_URL": archive_url,
                   "INGEST_DATA_DIR": os.environ["INGEST_DATA_DIR"]}
        settings = load_settings(str(tmp_path / "cart.ini"), environ=environ)
        current = cart_bootstrap.configure(settings)
        OrmSync.update_tables()
        return current

    yield configure
    DB.obj.close()
    CART_APP.use(previous[0])
    DB.initialize(previous[1])


def _make(uid: str, files: dict[int, bytes], wrong: int | None = None) -> Cart:
    cart = Cart.create(cart_uid=uid, status="staging")
    fileids = [{"id": str(file_id), "path": f"d/{file_id}.bin", "hashtype": "md5",
                "hashsum": "0" * 32 if file_id == wrong else hashlib.md5(data).hexdigest()}
               for file_id, data in files.items()]
    build_cart(fileids, cart.id)
    return Cart.get_by_id(cart.id)


def test_embedded_means_the_ingest_services_own_archive(ingest_archive, cart_runtime_on):
    archive, files = ingest_archive
    current = cart_runtime_on("embedded:")
    assert isinstance(current.archive, LocalArchiveRequests)
    assert current.archive.root == os.path.realpath(archive.root)
    cart = _make("emb", files)
    assert (cart.status, cart.error) == ("ready", "")
    layout = Cartutils(current.settings.volume_path, 0).layout(cart, "emb")
    with tarfile.open(fileobj=io.BytesIO(b"".join(layout.read()))) as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}
        mtimes = {member.mtime for member in tar.getmembers() if member.name.endswith(".bin")}
    assert members.pop("emb/manifest-md5.txt").count(b"\n") == 2
    assert members == {f"emb/d/{file_id}.bin": data for file_id, data in files.items()}
    assert mtimes == {1_500_000_000}


def test_a_file_archive_reports_a_bad_hash_and_a_missing_file_by_name(ingest_archive, cart_runtime_on):
    archive, files = ingest_archive
    cart_runtime_on(f"file://{archive.root}")
    cart = _make("bad", files, wrong=102)
    assert cart.status == "error" and "102" in cart.error and "101:" not in cart.error
    statuses = {row.file_name: (row.status, row.error) for row in File.select().where(File.cart == cart.id)}
    assert statuses["101"] == ("staged", "") and statuses["102"][0] == "error"
    missing = _make("missing", {999: b""})
    assert missing.status == "error" and "999" in missing.error
    with pytest.raises(Exception, match="no such file"):
        archive_for(f"file://{archive.root}", 1024).stage_file("../../etc/passwd")


def _cart_request(files: dict[int, bytes]) -> dict:
    return {"fileids": [{"id": str(file_id), "path": f"d/{file_id}.bin", "hashtype": "sha1",
                         "hashsum": hashlib.sha1(data).hexdigest()} for file_id, data in files.items()]}


def _served(url: str, uid: str) -> dict[str, bytes]:
    def ready():
        status = requests.head(f"{url}/{uid}", timeout=10).headers.get("X-Pacifica-Status")
        return status if status in ("ready", "error") else None

    assert wait_for(ready, 60, f"cart {uid}", interval=0.1) == "ready"
    body = requests.get(f"{url}/{uid}", params={"filename": f"{uid}.tar"}, timeout=30).content
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()
                if member.isfile() and "manifest" not in member.name}


def test_cartd_with_no_configuration_serves_the_embedded_ingests_files_and_resumes_after_a_restart(
        ingest_archive, tmp_path):
    """No broker, no archive interface, no worker to start: ``pacifica-cartd`` alone queues carts in
    its data directory, runs its own worker and reads the ingest service's embedded archive. A cart
    whose message a killed worker took with it is queued again when the service starts."""
    _archive, files = ingest_archive
    (tmp_path / "empty.ini").write_text("")
    env = {"CARTD_CONFIG": str(tmp_path / "empty.ini"), "CARTD_CPCONFIG": str(tmp_path / "none.ini"),
           "CARTD_DATA_DIR": str(tmp_path / "cartd"), "INGEST_DATA_DIR": os.environ["INGEST_DATA_DIR"]}
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start(log: str) -> Proc:
        server = Proc("cartd-embedded", [str(BIN / "pacifica-cartd"), "-p", str(port)], tmp_path / log,
                      env=env).start()
        server.wait_http(url + "/", 60)
        return server

    server = start("cartd.log")
    try:
        assert requests.post(f"{url}/first", json=_cart_request(files), timeout=30).status_code == 201
        assert _served(url, "first") == {f"first/d/{file_id}.bin": data for file_id, data in files.items()}
        assert "embedded worker started" in server.log()
    finally:
        server.stop(signal.SIGKILL)
    # A cart accepted, then its message lost with a killed worker: only the database knows it.
    database = make_database(f"sqliteext:///{tmp_path / 'cartd' / 'cartd.sqlite3'}")
    with Cart.bind_ctx(database), File.bind_ctx(database):
        lost = Cart.create(cart_uid="lost", status="staging")
        Cartutils.update_cart_files(lost, _cart_request(files)["fileids"])
    database.close()
    server = start("cartd-2.log")
    try:
        assert _served(url, "lost") == {f"lost/d/{file_id}.bin": data for file_id, data in files.items()}
        assert "resuming after a restart" in server.log()
    finally:
        server.stop()
