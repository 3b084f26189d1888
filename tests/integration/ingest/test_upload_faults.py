"""The upload path under faults: oversized, empty, cut-off and unstorable bodies; broker and
database outages. A refused body creates no job; an accepted one never stays in UPLOADING."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time

import pytest
import requests

from tests.conftest import embedded_stack
from tests.support import services
from tests.support.bundles import bundle_start, make_bundle
from tests.support.procs import wait_for
from tests.support.proxy import TcpProxy
from tests.support.stack import Stack

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def small_volume(tmp_path_factory):
    """A real 16 MiB filesystem (tmpfs) for the volume."""
    mountpoint = tmp_path_factory.mktemp("tmpfs-volume")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs volume (run the tests as root): {mounted.stderr}"
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture(scope="module")
def limited(tmp_path_factory, small_volume):
    stack = embedded_stack("limited", tmp_path_factory.mktemp("limited"), volume_path=str(small_volume),
                           max_upload_size="12 Mb")
    stack.start_server()
    yield stack
    stack.stop()


def good_job(stack, tmp_path) -> int:
    path = tmp_path / "good.tar"
    make_bundle(str(path), {"data/ok.txt": b"fine\n"})
    response = stack.upload(path)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def finished_and_cleaned(stack, job_id: int, volume) -> None:
    """Wait until every job up to ``job_id`` completed OK and its files left the volume (that
    comes just after completion), so what a test finds on the volume afterwards is its own."""
    for earlier in range(1, job_id + 1):
        final = stack.wait_complete(earlier)
        if final["state"] == "FAILED" and final["task"] == "UPLOADING":
            continue  # an upload this module failed on purpose: nothing of it is kept
        assert final["state"] == "OK", f"job {earlier} failed: {final}\n{stack.server.log()[-4000:]}"
        prefix = f"{earlier}."
        wait_for(lambda prefix=prefix: not [p for p in volume.iterdir() if p.name.startswith(prefix)], 10,
                 f"job {earlier}'s files to leave the volume")


def post_headers_only(stack, length: int) -> tuple[int, dict]:
    """Announce a body of ``length`` bytes, send none of it, and read the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.putrequest("POST", "/upload")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def test_declared_size_over_the_limit_is_413_before_the_body_is_read(limited, tmp_path):
    before = good_job(limited, tmp_path)
    status, body = post_headers_only(limited, 14 * MiB)
    assert status == 413 and "limit" in body["message"]
    assert good_job(limited, tmp_path) == before + 1, "a refused body still created a job"


def test_empty_body_is_400(limited, tmp_path):
    before = good_job(limited, tmp_path)
    response = requests.post(limited.url + "/upload", data=b"", timeout=10)
    assert response.status_code == 400 and "empty" in response.json()["message"]
    assert good_job(limited, tmp_path) == before + 1


def test_what_cannot_be_a_bundle_is_refused_at_the_door_with_a_hint_and_creates_no_job(limited, tmp_path):
    """The classic mistakes: curl -F (a form), a gzipped tar, another file, a POST with no body
    at all: each is refused on its first block, says what it looks like and how to send a bundle."""
    import gzip

    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/x.txt": b"x\n"})
    before = good_job(limited, tmp_path)
    url = limited.url + "/upload"
    answers = {
        "form": requests.post(url, files={"file": ("bundle.tar", bundle.read_bytes())}, timeout=10),
        "form, no type": requests.post(url, timeout=10, data=b"--xyz\r\nContent-Disposition: form-data; "
                                       b"name=\"file\"\r\n\r\n" + bundle.read_bytes() + b"\r\n--xyz--\r\n"),
        "gzip": requests.post(url, data=gzip.compress(bundle.read_bytes()), timeout=10),
        "not a tar": requests.post(url, data=b"<html>" * 200, timeout=10),
        "empty tar": requests.post(url, data=bytes(10240), timeout=10),
    }
    expected = {"form": (415, "multipart form"), "form, no type": (400, "multipart form"),
                "gzip": (400, "gzip-compressed"), "not a tar": (400, "not a tar"), "empty tar": (400, "tar is empty")}
    for name, answer in answers.items():
        status, words = expected[name]
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        message = answer.json()["message"]
        assert words in message and "curl --data-binary @bundle.tar" in message, (name, message)
        assert not answer.content.endswith(b" "), f"{name}: the error body is padded ({len(answer.content)} bytes)"
    # No body at all, not even a length: a bare `curl -X POST .../upload`.
    conn = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10)
    conn.request("POST", "/upload", headers={"Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    bare = json.loads(response.read())
    conn.close()
    assert response.status == 400 and "the request body is empty" in bare["message"], bare
    assert good_job(limited, tmp_path) == before + 1, "a refused body created a job"


def test_declared_size_over_free_space_is_507(limited, small_volume, tmp_path):
    ballast = small_volume / "ballast"
    ballast.write_bytes(b"\0" * 10 * MiB)
    try:
        status, body = post_headers_only(limited, 8 * MiB)
    finally:
        ballast.unlink()
    assert status == 507 and "free" in body["message"]


def test_disk_full_during_an_upload_fails_the_job_and_keeps_nothing(limited, small_volume, tmp_path):
    before = good_job(limited, tmp_path)
    finished_and_cleaned(limited, before, small_volume)
    ballast = small_volume / "ballast"
    ballast.write_bytes(b"\0" * 10 * MiB)
    try:
        def chunks():
            # A tar header announcing 8 MiB, then its bytes: a bundle as far as the door can tell.
            yield bundle_start(8 * MiB, "data/big.bin")
            for _ in range(8):
                yield b"x" * MiB

        try:
            response = requests.post(limited.url + "/upload", data=chunks(), timeout=30)
            assert response.status_code == 507, response.text
        except requests.ConnectionError:
            pass  # the server may answer and close while the client is still sending
        job = before + 1
        final = limited.wait_complete(job)
        assert (final["state"], final["task"]) == ("FAILED", "UPLOADING")
        assert "volume is full" in final["exception"]
        assert sorted(p.name for p in small_volume.iterdir()) == ["ballast"], "a partial bundle was left behind"
    finally:
        ballast.unlink()


def test_client_that_disconnects_mid_body_leaves_a_failed_job_and_no_partial_file(limited, small_volume, tmp_path):
    before = good_job(limited, tmp_path)
    finished_and_cleaned(limited, before, small_volume)
    begun = bundle_start(1_000_000 - 1024)  # a bundle's start: the door lets it in
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 1000000\r\n\r\n" + begun + b"y" * (100_000 - len(begun)))
        time.sleep(0.3)
    final = limited.wait_complete(before + 1)
    assert (final["state"], final["task"]) == ("FAILED", "UPLOADING"), final
    assert "100000 of the 1000000 bytes" in final["exception"]
    assert not list(small_volume.iterdir()), "a partial bundle was left behind"


@pytest.fixture
def proxied(tmp_path):
    """A stack whose database (PostgreSQL) and broker (RabbitMQ) are reached through cuttable proxies."""
    database = TcpProxy(services.PG_HOST, 5432).start()
    broker = TcpProxy(services.RABBIT_HOST, 5672).start()
    db_url = services.create_postgres_db("pacifica_ingest_proxied").replace(":5432/", f":{database.port}/")
    broker_url = services.rabbitmq_vhost("pacifica_ingest_test_proxied").replace(":5672/", f":{broker.port}/")
    stack = Stack(name="proxied", root=tmp_path, settings={
        "ingest": {"data_dir": str(tmp_path / "data")},
        "celery": {"broker_url": broker_url},
        "database": {"peewee_url": db_url, "connect_attempts": "1", "connect_wait": "0"},
    })
    stack.write_config()
    assert stack.cmd("dbsync").returncode == 0
    stack.start_server()
    yield stack, database, broker
    stack.stop()
    database.stop()
    broker.stop()


def test_broker_down_answers_503_promptly_and_strands_no_job(proxied, tmp_path):
    stack, _database, broker = proxied
    before = good_job(stack, tmp_path)
    broker.stop()
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/x.txt": b"x"})
    started = time.monotonic()
    response = stack.upload(path)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "broker" in response.json()["message"]
    assert elapsed < 15, f"the client waited {elapsed:.1f}s for a 503"
    final = stack.state(before + 1).json()
    assert (final["state"], final["task"], final["complete"]) == ("FAILED", "UPLOADING", True), final
    assert "broker" in final["exception"]


def test_database_down_answers_503_promptly_and_recovers(proxied, tmp_path):
    stack, database, _broker = proxied
    before = good_job(stack, tmp_path)
    database.stop()
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/x.txt": b"x"})
    started = time.monotonic()
    response = stack.upload(path)
    assert response.status_code == 503, response.text
    assert time.monotonic() - started < 15
    state = stack.state(before)
    assert state.status_code == 503 and "database" in state.json()["message"]
    database.start()
    after = wait_for(lambda: stack.upload(path), 20, "uploads to work again")
    assert after.status_code == 200, after.text
    assert stack.state(before).json()["job_id"] == before
    uploading = [job for job in range(before + 1, after.json()["job_id"])
                 if stack.state(job).status_code == 200 and stack.state(job).json()["task"] == "UPLOADING"
                 and stack.state(job).json()["state"] == "OK"]
    assert not uploading, f"jobs stranded in UPLOADING: {uploading}"
