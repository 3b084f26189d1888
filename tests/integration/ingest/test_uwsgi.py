"""The service under the real ``uwsgi`` binary, started as the seed's manual says.

``uwsgi --http-socket :8066 --master --module pacifica.ingest.wsgi``, on the embedded defaults
and on PostgreSQL and RabbitMQ with a separate Celery worker: uploads complete, an uploader that
pauses for 10 s (longer than uWSGI's 4 s socket timeout) goes on, the duties run in exactly one
process, and SIGTERM stops everything the server started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time

import pytest
import requests

from tests.support.bundles import make_bundle, upload_job
from tests.support.procs import wait_for

TUS = {"Tus-Resumable": "1.0.0"}


def _files(seed: str) -> dict[str, bytes]:
    return {f"data/{seed}/one.bin": os.urandom(300_000), f"data/{seed}/two.txt": f"{seed}\n".encode() * 500}


def _archived(stack, job_id: int) -> dict[str, bytes]:
    return {item["name"]: stack.archived(int(item["_id"])).read_bytes() for item in stack.files(job_id)}


def _expect_archived(stack, job_id: int, files: dict[str, bytes]) -> None:
    final = stack.wait_complete(job_id, 120)
    assert (final["state"], final["task"], final["task_percent"]) == ("OK", "ingest metadata", "100.0"), final
    assert _archived(stack, job_id) == {name.rsplit("/", 1)[1]: data for name, data in files.items()}


def _stalled_upload(stack, body: bytes, pause: float) -> tuple[int, dict]:
    """POST ``body`` to /upload, pausing ``pause`` seconds halfway; return (status, JSON answer)."""
    head = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", stack.port), timeout=60) as conn:
        conn.sendall(head + body[:half])
        time.sleep(pause)
        conn.sendall(body[half:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def _paused_upload_is_archived(stack, tmp_path, seed: str) -> None:
    files = _files(seed)
    bundle = tmp_path / f"{seed}.tar"
    make_bundle(str(bundle), files)
    status, answer = _stalled_upload(stack, bundle.read_bytes(), 10)
    assert status == 200, answer
    _expect_archived(stack, int(answer["job_id"]), files)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of our own is gone too (its parent, uWSGI, is the one to reap it).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[1].split()[0] == "Z"


def _signal_and_wait(stack, sig: int = signal.SIGTERM) -> None:
    """Signal the uWSGI master alone (as ``docker stop`` does), and wait for every process it
    started, embedded worker included, to end."""
    master = stack.server.popen
    master.send_signal(sig)
    # Within uWSGI's own 60 s "mercy" for its workers, and a little more.
    master.wait(90)

    def group_gone() -> bool:
        try:
            os.killpg(master.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, 90, "every process of the uWSGI server to end", interval=0.2)


def _upload(stack, path) -> int:
    response = stack.upload(path)
    assert response.status_code == 200, response.text
    return int(response.json()["job_id"])


def test_the_seeds_command_on_the_embedded_defaults(tmp_path):
    """No configuration but a data directory: uWSGI's process starts the embedded worker, runs
    recovery and housekeeping, and takes a paused upload; SIGTERM ends the worker with it."""
    from tests.conftest import embedded_stack

    stack = embedded_stack("uwsgi-embedded", tmp_path / "s", upload_expiry=str(3 / 3600))
    stack.start_uwsgi()
    try:
        files = _files("plain")
        bundle = tmp_path / "plain.tar"
        make_bundle(str(bundle), files)
        _expect_archived(stack, _upload(stack, bundle), files)
        worker_pids = [int(pid) for pid in re.findall(r"embedded worker started \(pid (\d+)\)", stack.server.log())]
        assert len(worker_pids) == 1, stack.server.log()[-3000:]

        _paused_upload_is_archived(stack, tmp_path, "paused")

        # Housekeeping runs under WSGI: an idle resumable upload expires (3 s here) and its job fails.
        created = requests.post(stack.url + "/uploads/", headers={**TUS, "Upload-Length": "1000"}, timeout=30)
        url = created.headers["Location"]
        idle = upload_job(url)
        expired = stack.wait_complete_or(idle, lambda state: state["state"] == "FAILED", 30)
        assert expired["state"] == "FAILED" and "expired" in expired["exception"], expired

        # uWSGI 2.0 stops on SIGINT (SIGTERM reloads it without --die-on-term). A job accepted
        # just before finishes after the restart (start-up recovery or its queued message).
        last = _files("last")
        bundle = tmp_path / "last.tar"
        make_bundle(str(bundle), last)
        job_id = _upload(stack, bundle)
        _signal_and_wait(stack, signal.SIGINT)
        assert _pid_gone(worker_pids[0]), "the embedded worker outlived uWSGI"
        stack.start_uwsgi("--die-on-term", log="uwsgi-2.log")
        _expect_archived(stack, job_id, last)
        # With --die-on-term (the deployment page's command), SIGTERM stops the server and its worker.
        started = re.findall(r"embedded worker started \(pid (\d+)\)", stack.server.log())
        _signal_and_wait(stack, signal.SIGTERM)
        assert _pid_gone(int(started[-1])), "the embedded worker outlived uWSGI"
        assert "Warm shutdown" in stack.server.log()
    finally:
        stack.stop()


@pytest.fixture
def rabbit_stack(tmp_path, peers, archive):
    from tests.conftest import make_stack

    stack = make_stack("uwsgi-pg-rabbit", "postgres", "rabbitmq", tmp_path / "s", peers, archive)
    stack.peers, stack.archive = peers, archive
    synced = stack.cmd("dbsync")
    assert synced.returncode == 0, synced.stderr
    stack.start_worker()
    yield stack
    stack.stop()


def test_uwsgi_with_postgres_rabbitmq_and_a_separate_worker(rabbit_stack, tmp_path):
    """The documented production command: several processes, one of which runs the duties; the
    Celery worker is its own process and outlives the web server."""
    stack = rabbit_stack
    stack.start_uwsgi("--processes", "2", "--threads", "4", "--die-on-term", "--socket-timeout", "300")
    files = _files("rabbit")
    bundle = tmp_path / "rabbit.tar"
    make_bundle(str(bundle), files)
    _expect_archived(stack, _upload(stack, bundle), files)

    _paused_upload_is_archived(stack, tmp_path, "rabbit-paused")

    log = stack.server.log()
    assert log.count("runs the service's duties") == 1, log[-3000:]
    assert "embedded worker started" not in log

    # SIGTERM stops the web server; jobs go on in the worker, and a new server answers for them.
    queued = _files("rabbit-last")
    bundle = tmp_path / "rabbit-last.tar"
    make_bundle(str(bundle), queued)
    job_id = _upload(stack, bundle)
    _signal_and_wait(stack)
    assert stack.worker.alive()
    stack.start_uwsgi("--die-on-term", log="uwsgi-2.log")
    _expect_archived(stack, job_id, queued)
