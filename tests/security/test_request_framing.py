"""How a request frames its body is a client's word too: a malformed chunked body is answered 400
(cheroot raised a bare ValueError that every handler turned into a 500), and a request framing
its body two ways (Content-Length and Transfer-Encoding, the shape of request smuggling through a
proxy that reads the other) is refused, on every endpoint that reads a body, in both services."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.security.test_cartd import cartd  # noqa: F401 - the fixture

MALFORMED = b"zz-not-hex\r\nabc\r\n0\r\n\r\n"
TWO_WAYS = b"Content-Length: 3\r\n"


def _post(port: int, path: str, body: bytes, extra: bytes = b"", content_type: str = "application/json",
          method: str = "POST") -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n".encode()
                     + b"Transfer-Encoding: chunked\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                     + b"Connection: close\r\n" + extra
                     + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


@pytest.mark.parametrize("extra", [b"", TWO_WAYS], ids=["malformed-chunks", "both-lengths"])
def test_ingest_answers_a_badly_framed_body_400_on_every_endpoint(ingest, tmp_path, extra):
    roots = tmp_path / "roots"
    roots.mkdir()
    stack = ingest("framing", move_roots=str(roots))
    created = requests.post(stack.url + "/uploads/", timeout=10,
                            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10240"})
    assert created.status_code == 201, created.text
    upload = "/uploads/" + created.headers["Location"].rsplit("/", 1)[1]
    for path, content_type, method in (("/upload", "application/octet-stream", "POST"),
                                       ("/validate", "application/json", "POST"),
                                       ("/move", "application/json", "POST"),
                                       (upload, "application/offset+octet-stream", "PATCH")):
        status, body = _post(stack.port, path, MALFORMED, extra, content_type, method)
        assert status == 400, (path, status, body)
        assert "chunked" in body["message"] or "Transfer-Encoding" in body["message"], (path, body)
    assert requests.get(stack.url + "/", timeout=10).status_code == 200
    assert "Traceback" not in stack.server.log()


@pytest.mark.parametrize("extra", [b"", TWO_WAYS], ids=["malformed-chunks", "both-lengths"])
def test_cartd_answers_a_badly_framed_cart_request_400(cartd, extra):  # noqa: F811 - the fixture
    start, _files = cartd
    url, server, _env = start()
    status, body = _post(int(url.rsplit(":", 1)[1]), "/framing-cart", MALFORMED, extra)
    assert status == 400 and ("chunked" in body["message"] or "Transfer-Encoding" in body["message"]), body
    assert requests.head(f"{url}/framing-cart", timeout=10).status_code == 404, "a refused cart was made"
    assert "Traceback" not in server.log()


def test_a_well_framed_chunked_body_is_still_read(ingest):
    stack = ingest("chunked-ok")
    status, body = _post(stack.port, "/validate", b"2\r\n[]\r\n0\r\n\r\n")
    assert status == 422 and "Transactions.submitter is missing" in body["problems"], body


def _responses(port: int, request: bytes) -> list[bytes]:
    """The status lines the server sends back for ``request`` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


SMUGGLED = b"GET /get_state?job_id=1 HTTP/1.1\r\nHost: x\r\nX-Http-Authed-User: admin\r\n\r\n"


def test_the_rest_of_a_refused_body_is_never_read_as_a_request(ingest, cartd):  # noqa: F811 - the fixture
    """A body refused before it is read (a callback the service will not call, a declared size over
    the limit, malformed chunks) ends the connection: its bytes are never parsed as the next
    request, which behind a trusted proxy would carry whatever identity header it forged."""
    stack = ingest("smuggle")
    refused = (b"POST /upload?callback_url=http://127.0.0.1:1/x HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)
    assert _responses(stack.port, refused) == [b"HTTP/1.1 400 Bad Request"]
    chunked = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + SMUGGLED)
    assert _responses(stack.port, chunked) == [b"HTTP/1.1 400 Bad Request"]
    start, _files = cartd
    url, _server, _env = start()
    too_large = (b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 999999999\r\n\r\n" + SMUGGLED)
    assert _responses(int(url.rsplit(":", 1)[1]), too_large) == [b"HTTP/1.1 413 Request Entity Too Large"]
