"""The deployment page's production uWSGI command at the edge: uWSGI's HTTP router takes the connections
(a client silent for 10 s while sending its headers is dropped; slow clients are held by the
router's event loop, not by the workers), the workers see each client's own address (protected
mode holds), one address holds at most a quarter of a process's threads, and an upload may
still pause mid-body."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import embedded_stack
from tests.security.test_protected_mode import remote_get
from tests.security.test_slow_clients import slow_header_attack, upload_with_a_pause
from tests.support.procs import BIN, Proc, free_port

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
# The deployment page's command, after `uwsgi`, without its address.
PRODUCTION = ["--http-headers-timeout", "10", "--http-timeout", "300", "--master", "--die-on-term",
              "--processes", "2", "--threads", "8", "--socket-timeout", "300", "--module", "pacifica.ingest.wsgi"]

TRICKLE = """
import socket, sys, tarfile, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# A bundle's first header, so that the upload is let in and then held waiting for the rest.
header = tarfile.TarInfo("data/t.bin")
header.size = 100000 - 1024
begun = header.tobuf(tarfile.USTAR_FORMAT)
held, answers = [], []
for _ in range(count):
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(b"POST /upload HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/octet-stream\\r\\n"
                 b"Content-Length: 100000\\r\\n\\r\\n" + begun + b"\\0" * (1000 - len(begun)))
    held.append(sock)
    time.sleep(0.3)
time.sleep(2)
for sock in held:
    sock.setblocking(False)
    try:
        answers.append(sock.recv(200).decode(errors="replace").split("\\r\\n")[0])
    except BlockingIOError:
        answers.append("waiting")
print(json.dumps(answers), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def uwsgi_router(tmp_path):
    """An embedded stack under the deployment page's production uWSGI command on every address."""
    started = []

    def start(**settings: str):
        stack = embedded_stack(f"uwsgi-edge-{len(started)}", tmp_path / f"s{len(started)}", **settings)
        stack.write_config()
        stack.port = free_port()
        stack.server = Proc(f"{stack.name}-uwsgi", [str(BIN / "uwsgi"), "--http", f"0.0.0.0:{stack.port}", *PRODUCTION],
                            stack.root / "uwsgi.log", env=stack.env).start()
        started.append(stack)
        stack.server.wait_http(stack.url + "/", 60)
        return stack

    yield start
    for stack in started:
        stack.stop()


def test_the_deployment_page_gives_this_command():
    assert "uwsgi --http :8066 " + " ".join(PRODUCTION) in " ".join(DEPLOYMENT.read_text().split())


def test_the_workers_see_each_clients_own_address(uwsgi_router, remote):
    stack = uwsgi_router()
    status, body, *_ = remote_get(remote, f"http://{remote.host_address}:{stack.port}/get_state?job_id=1")
    assert status == 403 and "protected mode" in json.loads(body)["message"], body
    assert requests.get(stack.url + "/get_state", params={"job_id": 1}, timeout=10).status_code == 404


def test_slow_header_connections_hold_no_worker(uwsgi_router, remote, tmp_path):
    """200 connections sending a header line every 0.5 s: the router holds them (a socket each,
    no worker), and every other request is answered at once."""
    stack = uwsgi_router(allow_anonymous="true")
    latencies, output = slow_header_attack(stack, remote, tmp_path, 15)
    assert max(latencies) < 1.0, latencies
    assert output.startswith("dropped"), output


def test_a_connection_silent_mid_headers_is_dropped_after_10_s(uwsgi_router):
    stack = uwsgi_router()
    with socket.create_connection(("127.0.0.1", stack.port), timeout=60) as sock:
        sock.sendall(b"GET /get_state?job_id=1 HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert sock.recv(100) == b""
        waited = time.monotonic() - started
    assert 9 < waited < 20, waited


def test_one_address_holds_at_most_its_share_of_the_threads(uwsgi_router, remote, tmp_path):
    """Six uploads trickling from one address: each process lets it hold 2 of its 8 threads, so
    at least two of them are refused at once with 429, and loopback is still answered."""
    stack = uwsgi_router(allow_anonymous="true")
    script = tmp_path / "trickle.py"
    script.write_text("import json\n" + TRICKLE)
    client = remote.popen([sys.executable, str(script), remote.host_address, str(stack.port), "6"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        answers = json.loads(client.stdout.readline())
        assert requests.get(stack.url + "/", timeout=5).status_code == 200
    finally:
        client.kill()
    assert answers.count("HTTP/1.1 429 Too Many Requests") >= 2 and answers.count("waiting") <= 4, answers


def test_an_upload_may_pause_past_uwsgis_own_timeouts(uwsgi_router, tmp_path):
    """A pause of 70 s mid-body: past uWSGI's default read timeouts (4 s in a worker, 60 s in the
    router), within the deployment page's 300 s."""
    upload_with_a_pause(uwsgi_router(), tmp_path, 70)
