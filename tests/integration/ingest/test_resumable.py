"""Resumable uploads with tus 1.0.0 under /uploads/, driven by the published tuspy client and by
raw requests where the protocol's edges are tested."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading
import time

import pytest
import requests
from tusclient.client import TusClient

from tests.support.bundles import make_bundle, upload_job
from tests.support.proxy import TcpProxy

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def tus_stack(stacks):
    return stacks.get("postgres-redis")


def _create(stack, length: int, **headers: str) -> requests.Response:
    return requests.post(stack.url + "/uploads/", headers={**TUS, "Upload-Length": str(length), **headers},
                         timeout=30)


def _patch(url: str, offset: int, data: bytes, **headers: str) -> requests.Response:
    return requests.patch(url, data=data, timeout=60, headers={
        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **headers})


def _offset(url: str) -> int:
    response = requests.head(url, headers=TUS, timeout=30)
    assert response.status_code == 200, response.headers
    return int(response.headers["Upload-Offset"])


def test_options_announce_the_protocol_and_extensions(tus_stack):
    response = requests.options(tus_stack.url + "/uploads/", timeout=30)
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert {"creation", "termination", "checksum"} <= set(response.headers["Tus-Extension"].split(","))
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"].split(",")


def test_tuspy_upload_cut_several_times_completes_with_every_byte(tus_stack, tmp_path):
    files = {f"data/big/part{number}.bin": os.urandom(100 * 1024 * 1024) for number in range(3)}
    bundle = tmp_path / "big.tar"
    make_bundle(str(bundle), files)
    proxy = TcpProxy("127.0.0.1", int(tus_stack.url.rsplit(":", 1)[1])).start()
    cuts = []
    finished = threading.Event()
    # Cut when these many bytes have gone through: whatever the machine's speed, the upload is
    # cut four times in the middle of a chunk.
    thresholds = [40 * 2**20, 110 * 2**20, 190 * 2**20, 260 * 2**20]

    def cutter() -> None:
        while not finished.is_set() and thresholds:
            if proxy.forwarded >= thresholds[0] and proxy.cut():
                cuts.append(thresholds.pop(0))
            time.sleep(0.002)

    client = TusClient(f"http://127.0.0.1:{proxy.port}/uploads/", headers={"X-Http-Authed-User": "dmlb2001"})
    uploader = client.uploader(str(bundle), chunk_size=32 * 1024 * 1024, retries=20, retry_delay=1,
                               metadata={"filename": "big.tar"})
    threading.Thread(target=cutter, daemon=True).start()
    try:
        uploader.upload()
    finally:
        finished.set()
        proxy.stop()
    assert len(cuts) == 4, f"the connection was cut only {len(cuts)} times"
    job_id = upload_job(uploader.url)
    state = tus_stack.wait_complete(job_id, timeout=180)
    assert state["state"] == "OK" and state["task"] == "ingest metadata", state
    archived = {item["subdir"] + "/" + item["name"]: item["_id"] for item in tus_stack.files(job_id)}
    for name, data in files.items():
        stored = tus_stack.archived(archived[name.removeprefix("data/")])
        assert hashlib.sha1(stored.read_bytes()).digest() == hashlib.sha1(data).digest(), name
    assert not (tus_stack.volume / f"{job_id}.tus").exists()


def test_upload_cut_mid_chunk_resumes_from_the_servers_offset(tus_stack, tmp_path):
    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/a.bin": os.urandom(300_000)})
    body = bundle.read_bytes()
    created = _create(tus_stack, len(body), **{"X-Http-Authed-User": "dmlb2001"})
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    job_id = upload_job(url)
    assert created.json()["job_id"] == job_id
    state = tus_stack.state(job_id).json()
    assert (state["state"], state["task"], state["bytes_total"]) == ("OK", "UPLOADING", len(body))
    # A chunk that says it is longer than what arrives: the server keeps what came.
    proxy = TcpProxy("127.0.0.1", int(tus_stack.url.rsplit(":", 1)[1])).start()
    try:
        from http.client import HTTPConnection

        connection = HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        connection.putrequest("PATCH", "/uploads/" + url.rsplit("/", 1)[1])
        for name, value in {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
                            "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(body[:123_457])
        time.sleep(0.5)
        assert proxy.cut() == 1
    finally:
        proxy.stop()
    deadline = time.monotonic() + 10
    while _offset(url) != 123_457 and time.monotonic() < deadline:
        time.sleep(0.1)
    offset = _offset(url)
    assert offset == 123_457
    # The bytes are on the volume (HEAD's offset) a moment before the job's row says so.
    progress = tus_stack.state(job_id).json()
    while progress["bytes_done"] != offset and time.monotonic() < deadline:
        time.sleep(0.1)
        progress = tus_stack.state(job_id).json()
    assert progress["task"] == "UPLOADING" and progress["bytes_done"] == offset
    assert 0 < float(progress["task_percent"]) < 100
    # A PATCH at the wrong offset is refused and changes nothing.
    assert _patch(url, 0, body[:10]).status_code == 409
    assert _offset(url) == offset
    done = _patch(url, offset, body[offset:])
    assert done.status_code == 204, done.text
    assert int(done.headers["Upload-Offset"]) == len(body)
    assert tus_stack.wait_complete(job_id)["state"] == "OK"
    assert requests.head(url, headers=TUS, timeout=30).status_code == 404


def test_checksum_mismatch_is_refused_with_460_and_the_offset_stays(tus_stack, tmp_path):
    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/a.bin": os.urandom(50_000)})
    body = bundle.read_bytes()
    url = _create(tus_stack, len(body)).headers["Location"]
    half = len(body) // 2
    good = "sha1 " + base64.b64encode(hashlib.sha1(body[:half]).digest()).decode()
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"other bytes").digest()).decode()
    refused = _patch(url, 0, body[:half], **{"Upload-Checksum": wrong})
    assert refused.status_code == 460, refused.text
    assert "checksum" in refused.json()["message"]
    assert _offset(url) == 0
    unknown = _patch(url, 0, body[:half], **{"Upload-Checksum": "crc99 AAAA"})
    assert unknown.status_code == 400 and "not supported" in unknown.json()["message"]
    accepted = _patch(url, 0, body[:half], **{"Upload-Checksum": good})
    assert accepted.status_code == 204 and _offset(url) == half
    rest = "sha1 " + base64.b64encode(hashlib.sha1(body[half:]).digest()).decode()
    assert _patch(url, half, body[half:], **{"Upload-Checksum": rest}).status_code == 204
    job_id = upload_job(url)
    assert tus_stack.wait_complete(job_id)["state"] == "OK"


def test_protocol_errors_are_clear(tus_stack):
    no_version = requests.post(tus_stack.url + "/uploads/", headers={"Upload-Length": "10"}, timeout=30)
    assert no_version.status_code == 412 and no_version.headers["Tus-Version"] == "1.0.0"
    no_length = requests.post(tus_stack.url + "/uploads/", headers=TUS, timeout=30)
    assert no_length.status_code == 400 and "Upload-Length" in no_length.json()["message"]
    bad_metadata = _create(tus_stack, 10, **{"Upload-Metadata": "name not-base64!"})
    assert bad_metadata.status_code == 400
    bad_callback = _create(tus_stack, 10, **{"X-Pacifica-Callback": "ftp://example.org/x"})
    assert bad_callback.status_code == 400 and "callback" in bad_callback.json()["message"]
    url = _create(tus_stack, 10).headers["Location"]
    wrong_type = requests.patch(url, data=b"x", timeout=30,
                                headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    too_long = _patch(url, 0, b"x" * 11)
    assert too_long.status_code == 413 and _offset(url) == 0
    assert requests.head(tus_stack.url + "/uploads/999999999", headers=TUS, timeout=30).status_code == 404
    assert requests.head(tus_stack.url + "/uploads/abc", headers=TUS, timeout=30).status_code == 400


def test_termination_frees_the_space_and_fails_the_job(tus_stack):
    created = _create(tus_stack, 1000)
    url = created.headers["Location"]
    job_id = upload_job(url)
    assert _patch(url, 0, b"x" * 400).status_code == 204
    assert (tus_stack.volume / f"{job_id}.tus").stat().st_size == 400
    ended = requests.delete(url, headers=TUS, timeout=30)
    assert ended.status_code == 204
    assert not (tus_stack.volume / f"{job_id}.tus").exists()
    state = tus_stack.state(job_id).json()
    assert state["state"] == "FAILED" and "ended by the client" in state["exception"]
    assert requests.head(url, headers=TUS, timeout=30).status_code == 404


def test_unfinished_uploads_expire_and_their_space_is_freed(tmp_path):
    from tests.conftest import embedded_stack

    stack = embedded_stack("tusexpiry", tmp_path / "s", upload_expiry=str(2 / 3600))  # two seconds
    stack.start_server()
    try:
        url = _create(stack, 1000).headers["Location"]
        job_id = upload_job(url)
        assert _patch(url, 0, b"x" * 100).status_code == 204
        expires = requests.head(url, headers=TUS, timeout=30).headers["Upload-Expires"]
        assert expires.endswith("GMT")
        deadline = time.monotonic() + 20
        while (tus_stack_state := stack.state(job_id).json())["state"] != "FAILED" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tus_stack_state["state"] == "FAILED" and "expired" in tus_stack_state["exception"]
        assert not (stack.volume / f"{job_id}.tus").exists()
        assert requests.head(url, headers=TUS, timeout=30).status_code == 404
    finally:
        stack.stop()


def test_an_unfinished_upload_survives_a_restart_of_the_service(tmp_path):
    """The embedded service fails uploads cut off by a restart, except resumable ones: their
    client carries on from the offset."""
    from tests.conftest import embedded_stack

    stack = embedded_stack("tusrestart", tmp_path / "s")
    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/a.bin": os.urandom(200_000)})
    body = bundle.read_bytes()
    stack.start_server()
    try:
        url = _create(stack, len(body)).headers["Location"]
        job_id = upload_job(url)
        assert _patch(url, 0, body[:70_000]).status_code == 204
        stack.server.kill(signal.SIGKILL, True)
        stack.start_server()
        url = stack.url + "/uploads/" + url.rsplit("/", 1)[1]  # the same upload on the new port
        assert _offset(url) == 70_000
        assert stack.state(job_id).json()["state"] == "OK"
        assert _patch(url, 70_000, body[70_000:]).status_code == 204
        final = stack.wait_complete(job_id)
        assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final
    finally:
        stack.stop(signal.SIGKILL)
