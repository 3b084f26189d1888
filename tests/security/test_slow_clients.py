"""Slow clients cannot take the server: request headers must arrive within 10 s and one address
holds at most a quarter of the threads, while an upload may still pause for minutes mid-body."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import requests

from tests.support.bundles import make_bundle

LORIS = """
import socket, sys, time
host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
held = []
for _ in range(count):
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(b"GET /get_state?job_id=1 HTTP/1.1\\r\\nHost: x\\r\\n")
    held.append(sock)
print("open", len(held), flush=True)
started, dropped = time.monotonic(), 0
while held and time.monotonic() - started < seconds:
    for sock in list(held):
        try:
            sock.sendall(b"X-Slow: 1\\r\\n")
        except OSError:
            held.remove(sock)
            dropped += 1
    time.sleep(0.5)
print("dropped", dropped, "after", round(time.monotonic() - started, 1), flush=True)
"""


def slow_header_attack(stack, remote, tmp_path, seconds: float) -> tuple[list[float], str]:
    """200 slow-header connections to ``stack`` from ``remote`` for ``seconds``; meanwhile ten
    get_state requests from loopback. Their latencies, and what the attacker saw."""
    script = tmp_path / "loris.py"
    script.write_text(LORIS)
    attacker = remote.popen([sys.executable, str(script), remote.host_address, str(stack.port), "200",
                             str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert attacker.stdout.readline().strip() == "open 200"
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            answer = requests.get(stack.url + "/get_state", params={"job_id": 1}, timeout=5)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 404
            time.sleep(0.5)
        output, _ = attacker.communicate(timeout=60)
    finally:
        attacker.kill()
    return latencies, output


def test_two_hundred_slow_header_connections_leave_the_server_answering(ingest, remote, tmp_path):
    stack = ingest("loris", address="0.0.0.0", allow_anonymous="true")
    latencies, output = slow_header_attack(stack, remote, tmp_path, 40)
    assert max(latencies) < 1.0, latencies
    dropped, seconds = int(output.split()[1]), float(output.split()[3])
    assert dropped == 200 and seconds < 20, output  # each within the 10 s header deadline


def _whole_answer(sock: socket.socket) -> str:
    """The whole HTTP answer on ``sock``: its head and as many body bytes as it announces (the
    server may send them in separate segments)."""
    answer = b""
    while True:
        head, found, body = answer.partition(b"\r\n\r\n")
        if found:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                return answer.decode()
        chunk = sock.recv(65536)
        if not chunk:
            return answer.decode()
        answer += chunk


def upload_with_a_pause(stack, tmp_path, pause: float) -> None:
    """Upload a bundle, stopping ``pause`` seconds half-way through its body; it must complete."""
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.bin": b"m" * 2_000_000})
    body = path.read_bytes()
    with socket.create_connection(("127.0.0.1", stack.port), timeout=pause + 100) as sock:
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
        time.sleep(pause)
        sock.sendall(body[len(body) // 2:])
        answer = _whole_answer(sock)
    assert answer.startswith("HTTP/1.1 200"), answer[:300]
    job_id = int(answer.split('"job_id": ')[1].split(",")[0])
    assert stack.wait_complete(job_id)["state"] == "OK"


def test_an_upload_that_pauses_for_minutes_mid_body_still_succeeds(ingest, tmp_path):
    upload_with_a_pause(ingest("pause"), tmp_path, 290)  # under the 300 s socket timeout of the body's reads
