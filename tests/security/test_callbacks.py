"""Completion callbacks cannot be aimed into the facility: every internal address, in every
notation, is refused at upload time with a 400 naming the rule; an operator's callback_hosts let
an internal receiver in; redirects are not followed."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.support.bundles import make_bundle
from tests.support.procs import wait_for

HOSTILE = [
    "http://127.0.0.1:{port}/", "http://localhost:{port}/", "http://[::1]:{port}/", "http://2130706433:{port}/",
    "http://0x7f000001:{port}/", "http://127.1:{port}/", "http://0177.0.0.1:{port}/", "http://0.0.0.0:{port}/",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://192.168.1.1/", "http://172.16.0.1/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://[::ffff:7f00:1]:{port}/", "http://[fe80::1]/",
    "http://[fc00::1]/", "http://224.0.0.1/", "http://100.64.0.1/", "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/", "http://user:pw@127.0.0.1:{port}/", "gopher://127.0.0.1:{port}/",
    "file:///etc/passwd", "http://no-such-host.invalid/",
]


class Receiver:
    """A loopback HTTP receiver that records POSTs; ``redirect`` makes it answer 307 there."""

    def __init__(self, redirect: str | None = None) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if redirect:
                    self.send_response(307)
                    self.send_header("Location", redirect)
                else:
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_every_internal_address_is_refused_at_upload_time(ingest, tmp_path):
    stack = ingest("ssrf")
    receiver = Receiver()
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    try:
        hostile = [url.format(port=receiver.port) for url in HOSTILE]
        if _resolves("ip6-localhost"):
            hostile.append(f"http://ip6-localhost:{receiver.port}/")
        for url in hostile:
            for way in ("header", "query", "tus"):
                if way == "header":
                    answer = stack.upload(path, **{"X-Pacifica-Callback": url})
                elif way == "query":
                    answer = requests.post(stack.url + "/upload", params={"callback_url": url},
                                           data=path.read_bytes(), timeout=30)
                else:
                    import base64

                    encoded = base64.b64encode(url.encode()).decode()
                    answer = requests.post(stack.url + "/uploads/", timeout=30, headers={
                        "Tus-Resumable": "1.0.0", "Upload-Length": "100", "Upload-Metadata": f"callback_url {encoded}"})
                assert answer.status_code == 400, (url, way, answer.status_code)
                message = answer.json()["message"]
                assert "callback URL" in message, (url, message)
        assert stack.state(1).status_code == 404, "a refused upload created a job"
        assert receiver.bodies == []
    finally:
        receiver.close()


def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, 80)
    except OSError:
        return False
    return True


def test_callback_hosts_let_an_internal_receiver_in_and_redirects_are_not_followed(ingest, tmp_path):
    target = Receiver()
    redirecting = Receiver(redirect=f"http://127.0.0.1:{target.port}/stolen")
    direct = Receiver()
    stack = ingest("hooks", callback_hosts="127.0.0.1")
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    try:
        job_id = stack.upload(path, **{"X-Pacifica-Callback": f"http://127.0.0.1:{direct.port}/done"}).json()["job_id"]
        stack.wait_complete(job_id)
        wait_for(lambda: direct.bodies, 30, "the callback")
        assert b'"state": "OK"' in direct.bodies[0]
        job_id = stack.upload(path, **{"X-Pacifica-Callback": f"http://127.0.0.1:{redirecting.port}/"}).json()["job_id"]
        stack.wait_complete(job_id)
        wait_for(lambda: "given up after 1 attempts" in stack.server.log(), 30, "the redirect to be given up")
        assert len(redirecting.bodies) == 1 and target.bodies == [], "a redirect was followed"
        # localhost is not 127.0.0.1 by name: the allow-list names what it allows.
        refused = stack.upload(path, **{"X-Pacifica-Callback": f"http://[::1]:{direct.port}/"})
        assert refused.status_code == 400
    finally:
        for receiver in (target, redirecting, direct):
            receiver.close()
