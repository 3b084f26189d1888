"""The archive's hot path on http.client: the session's semantics, on loopback servers that
speak HTTP/1.1 the way the published archive interface's deployments do."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from pacifica.core import direct_http
from pacifica.core.errors import PeerRejected, PeerUnavailable
from pacifica.core.http import lean_call, make_session


class Server:
    """A loopback HTTP/1.1 server answering each request with ``answer(request_head, body)``
    (status and content, or None to hang up unanswered);
    with ``close_after``, it closes each connection after answering without saying so (as uWSGI
    ``--http-socket`` does). It records every request and counts connections."""

    def __init__(self, answer=None, close_after: bool = False) -> None:
        self.answer = answer or (lambda head, body: (201, b'{"message": "File added to archive"}'))
        self.close_after = close_after
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client went away (it stops reading a long answer)
            self._exchange(sock)

    def _exchange(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = reader.read(length)
                self.requests.append((head, body))
                answered = self.answer(head, body)
                if answered is None:
                    return  # hangs up unanswered
                status, content = answered
                sock.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % (status, len(content)) + content)
                if self.close_after:
                    time.sleep(0.05)  # answered; the close follows, unannounced
                    return

    def url(self, path: str = "/7") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def server():
    made: list[Server] = []

    def make(**kwargs) -> Server:
        made.append(Server(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.stop()
    direct_http.close_kept()


def test_requests_share_one_kept_connection_and_send_what_was_given(server):
    archive = server()
    session = make_session(5, 0)
    for file_id in (1, 2, 3):
        answer = lean_call(session, "archive", "PUT", archive.url(f"/{file_id}"), body=[b"ab", b"cd"],
                           headers={"Content-Length": "4", "Last-Modified": "Sun, 06 Nov 1994 08:49:37 GMT"})
        assert answer.status == 201 and b"File added" in answer.data
    assert archive.connections == 1
    assert [head.split(b" ")[1] for head, _ in archive.requests] == [b"/1", b"/2", b"/3"]
    assert all(body == b"abcd" and b"Last-Modified: Sun, 06 Nov 1994" in head for head, body in archive.requests)


def test_a_body_of_bytes_or_none_gets_its_length(server):
    # CherryPy answers 411 to a PATCH or POST without one (the archive's move, its recall).
    archive = server()
    session = make_session(5, 0)
    lean_call(session, "archive", "PATCH", archive.url(), body=b'{"path": "/x"}')
    lean_call(session, "archive", "POST", archive.url())
    lean_call(session, "archive", "DELETE", archive.url())
    heads = [head for head, _ in archive.requests]
    assert b"Content-Length: 14\r\n" in heads[0] and archive.requests[0][1] == b'{"path": "/x"}'
    assert b"Content-Length: 0\r\n" in heads[1]
    assert b"Content-Length" not in heads[2]


def test_a_connection_the_server_closed_while_idle_is_replaced_before_use(server):
    archive = server(close_after=True)
    session = make_session(5, 0)
    for file_id in (1, 2, 3):
        lean_call(session, "archive", "PUT", archive.url(f"/{file_id}"), body=b"x")
        time.sleep(0.2)  # the server has closed the connection by now
    assert len(archive.requests) == 3 and archive.connections == 3


def test_with_close_each_request_opens_its_own_connection(server):
    archive = server()
    session = make_session(5, 0)
    for _ in range(3):
        lean_call(session, "archive", "HEAD", archive.url(), headers={"Connection": "close"}, close=True)
    assert archive.connections == 3


def test_answers_become_the_same_errors_as_before(server):
    missing = server(answer=lambda head, body: (500, b'{"message": "[Errno 2] No such file or directory"}'))
    with pytest.raises(PeerUnavailable) as failed:
        lean_call(make_session(5, 0), "archive", "GET", missing.url())
    assert failed.value.status == 500 and failed.value.os_errno == 2
    refused = server(answer=lambda head, body: (411, b"Client must specify Content-Length"))
    with pytest.raises(PeerRejected, match="HTTP 411"):
        lean_call(make_session(5, 0), "archive", "PUT", refused.url(), body=b"x")


def test_a_long_answer_is_cut_and_its_connection_not_kept(server):
    chatty = server(answer=lambda head, body: (201, b"x" * (direct_http.BODY_LIMIT * 2)))
    session = make_session(5, 0)
    first = lean_call(session, "archive", "PUT", chatty.url(), body=b"x")
    lean_call(session, "archive", "PUT", chatty.url(), body=b"x")
    assert len(first.data) == direct_http.BODY_LIMIT
    assert chatty.connections == 2


def test_a_refused_connection_is_tried_again_then_unavailable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    with pytest.raises(PeerUnavailable) as failed:
        lean_call(make_session(5, 2), "archive", "PUT", f"http://127.0.0.1:{port}/1", body=b"x")
    # Three tries: at once, again at once, then after 0.4 s (the session's backoff).
    assert 0.35 <= time.monotonic() - began < 5
    assert failed.value.detail.startswith("connection failed") and not failed.value.connection_lost


def test_a_silent_server_times_out_as_the_session_says():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    try:
        began = time.monotonic()
        with pytest.raises(PeerUnavailable) as failed:
            lean_call(make_session(0.5, 0), "archive", "PUT", f"http://127.0.0.1:{listener.getsockname()[1]}/1",
                      body=b"x")
        assert time.monotonic() - began < 5
        assert failed.value.detail.startswith("timed out")
    finally:
        listener.close()


def test_a_connection_lost_under_a_request_says_so(server):
    archive = server(answer=lambda head, body: None)
    with pytest.raises(PeerUnavailable) as failed:
        lean_call(make_session(5, 0), "archive", "PUT", archive.url(), body=b"x")
    assert failed.value.connection_lost
