"""The cart service end to end: pacifica-cartd and a Celery worker on PostgreSQL and RabbitMQ,
pulling from the published archive interface."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import tarfile
import time

import pytest
import requests

from pacifica.cartd.peers.archive import ArchiveRequests
from pacifica.core.http import make_session
from pacifica.ingest.peers.archive import HttpArchive
from tests.support.cartd import cart_service
from tests.support.procs import BIN, wait_for

FIRST_ID = 987_660_001


@pytest.fixture(scope="module")
def cartd(tmp_path_factory, archive):
    with cart_service(tmp_path_factory.mktemp("cartd"), archive.url, "pacifica_cartd_test") as service:
        yield service.url, service.root


def _worker_log(root) -> str:
    return (root / "worker.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def archived(archive):
    put = HttpArchive(archive.url, make_session(30, 1))
    files = {}
    for number in range(3):
        data = os.urandom(200_000 + number)
        put.put(FIRST_ID + number, [data], len(data), 1_600_000_000)
        files[FIRST_ID + number] = data
    return files


def _wait_status(url: str, uid: str, wanted: set[str]) -> requests.Response:
    def reached():
        response = requests.head(f"{url}/{uid}", timeout=10)
        return response if response.headers.get("X-Pacifica-Status") in wanted else None

    return wait_for(reached, 60, f"cart {uid} to be one of {wanted}", interval=0.1)


def test_a_cart_is_staged_bundled_served_and_deleted(cartd, archived, archive):
    url, _root = cartd
    uid = f"cart-{time.time_ns()}"
    fileids = [{"id": str(file_id), "path": f"dir{file_id % 2}/f{file_id}.bin", "hashtype": "sha1",
                "hashsum": hashlib.sha1(data).hexdigest()} for file_id, data in archived.items()]
    created = requests.post(f"{url}/{uid}", json={"fileids": fileids}, timeout=30)
    assert created.status_code == 201 and created.json() == {"message": "Cart Processing has begun"}
    ready = _wait_status(url, uid, {"ready", "error"})
    assert ready.headers["X-Pacifica-Status"] == "ready", ready.headers
    download = requests.get(f"{url}/{uid}", params={"filename": "mine.tar"}, timeout=60)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == 'attachment; filename="mine.tar"'
    assert int(download.headers["Content-Length"]) == len(download.content)
    assert download.headers["Accept-Ranges"] == "bytes"
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        contents = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}
        mtimes = {member.mtime for member in tar.getmembers() if member.isfile() and "manifest" not in member.name}
    manifest = contents.pop("mine/manifest-sha1.txt").decode()
    assert contents == {f"mine/dir{file_id % 2}/f{file_id}.bin": data for file_id, data in archived.items()}
    assert sorted(manifest.splitlines()) == sorted(f"{item['hashsum']}  {item['path']}" for item in fileids)
    client = ArchiveRequests(archive.url, transfer_size=1024)
    archive_mtimes = {int(float(json.loads(client.status_file(file_id))["mtime"])) for file_id in archived}
    assert mtimes == archive_mtimes, "the files keep the archive's modification time"
    default = requests.get(f"{url}/{uid}", timeout=60)
    assert default.headers["Content-Disposition"].startswith('attachment; filename="data_')
    deleted = requests.delete(f"{url}/{uid}", timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"message": "Cart Deleted Successfully"}
    assert requests.get(f"{url}/{uid}", timeout=30).status_code == 404
    assert requests.head(f"{url}/{uid}", timeout=30).status_code == 404
    assert requests.delete(f"{url}/{uid}", timeout=30).status_code == 404


def test_a_hash_mismatch_is_the_carts_error_naming_the_file(cartd, archived):
    url, root = cartd
    uid = f"bad-{time.time_ns()}"
    file_id = next(iter(archived))
    body = {"fileids": [{"id": str(file_id), "path": "x.bin", "hashtype": "md5", "hashsum": "0" * 32}]}
    assert requests.post(f"{url}/{uid}", json=body, timeout=30).status_code == 201
    failed = _wait_status(url, uid, {"error", "ready"})
    assert failed.headers["X-Pacifica-Status"] == "error"
    assert str(file_id) in failed.headers["X-Pacifica-Message"]
    # A polling client learns that the cart failed, and why (the published service said 202 for ever).
    download = requests.get(f"{url}/{uid}", timeout=30)
    assert download.status_code == 424 and str(file_id) in download.json()["message"], download.text
    # The Celery task fails too, with the reason (as ingest's stages do), not SUCCESS.
    failure = wait_for(lambda: [line for line in _worker_log(root).splitlines()
                                if "stage_files" in line and "raised unexpected: CartError" in line
                                and str(file_id) in line], 30, "the task's failure in the worker log")
    assert failure


@pytest.mark.parametrize(("body", "fragment"), [
    (b"not json", "not valid JSON"),
    (b"{}", "fileids"),
    (b'{"fileids": [{"id": "1", "path": "../etc/passwd", "hashtype": "md5", "hashsum": ""}]}', "path"),
    (b'{"fileids": [{"id": "1", "path": "a", "hashtype": "crc", "hashsum": ""}]}', "hashtype"),
])
def test_bad_cart_requests_are_400_naming_the_problem(cartd, body, fragment):
    url, _root = cartd
    response = requests.post(f"{url}/bad-request", data=body, timeout=30)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]
    assert requests.head(f"{url}/bad-request", timeout=30).status_code == 404


def test_the_published_downloader_gets_a_cart(cartd, archived, tmp_path):
    from pacifica.downloader import Downloader

    url, _root = cartd
    transinfo = {"files": {str(file_id): {"subdir": "raw/run1", "name": f"f{file_id}.bin", "hashtype": "sha1",
                                          "hashsum": hashlib.sha1(data).hexdigest()}
                           for file_id, data in archived.items()}}
    Downloader(cart_api_url=url).transactioninfo(str(tmp_path), transinfo, filename="data", timeout=60)
    for file_id, data in archived.items():
        assert (tmp_path / "data" / "raw" / "run1" / f"f{file_id}.bin").read_bytes() == data


def test_purge_deletes_carts_unused_for_the_time_given(cartd, archived):
    import subprocess

    url, root = cartd
    uid = f"purge-{time.time_ns()}"
    file_id, data = next(iter(archived.items()))
    body = {"fileids": [{"id": str(file_id), "path": "a.bin", "hashtype": "sha1",
                         "hashsum": hashlib.sha1(data).hexdigest()}]}
    assert requests.post(f"{url}/{uid}", json=body, timeout=30).status_code == 201
    _wait_status(url, uid, {"ready"})
    command = [str(BIN / "pacifica-cartd-cmd"), "-c", str(root / "cart.ini"), "purge"]
    kept = subprocess.run([*command, "--time-ago", "1 days ago"], capture_output=True, text=True, timeout=60)
    assert kept.returncode == 0 and uid not in kept.stdout, kept.stderr
    assert requests.head(f"{url}/{uid}", timeout=30).headers["X-Pacifica-Status"] == "ready"
    time.sleep(1.1)
    purged = subprocess.run([*command, "--time-ago", "1 seconds ago"], capture_output=True, text=True, timeout=60)
    assert purged.returncode == 0 and f"deleted cart {uid}" in purged.stdout, purged.stdout + purged.stderr
    assert requests.get(f"{url}/{uid}", timeout=30).status_code == 404
    bad = subprocess.run([*command, "--time-ago", "soon"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "7 days ago" in bad.stderr


def test_sigterm_stops_the_cart_server(tmp_path, archive):
    """``docker stop`` sends SIGTERM to the server alone; it must stop, not wait for SIGKILL."""
    from tests.support.cartd import cart_service

    with cart_service(tmp_path, archive.url, "pacifica_cartd_sigterm") as service:
        service.server.wait_log("Bus STARTED", 30)
        started = time.monotonic()
        service.server.popen.send_signal(signal.SIGTERM)
        assert service.server.popen.wait(15) == 0
        assert time.monotonic() - started < 10


def test_the_cherrypy_config_files_address_and_port_are_used_unless_given(tmp_path, archive):
    """As in 0.7.0: ``--cpconfig`` decides where the server listens; ``-a``/``-p`` override it."""
    from tests.support.procs import Proc, free_port

    port = free_port()
    cpconfig = tmp_path / "cp.ini"
    cpconfig.write_text(f"[global]\nserver.socket_host: '127.0.0.1'\nserver.socket_port: {port}\n"
                        "[/]\nrequest.dispatch: cherrypy.dispatch.MethodDispatcher()\n")
    config = tmp_path / "cart.ini"
    config.write_text(f"[cartd]\ndata_dir = {tmp_path / 'data'}\n[archiveinterface]\nurl = {archive.url}/\n")
    server = Proc("cartd-cpconfig", [str(BIN / "pacifica-cartd"), "-c", str(config), "--cpconfig", str(cpconfig)],
                  tmp_path / "server.log").start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/", 60)
    finally:
        server.stop()
    other = free_port()
    server = Proc("cartd-cpconfig-p", [str(BIN / "pacifica-cartd"), "-c", str(config), "--cpconfig", str(cpconfig),
                                       "-p", str(other)], tmp_path / "server-p.log").start()
    try:
        server.wait_http(f"http://127.0.0.1:{other}/", 60)
    finally:
        server.stop()
