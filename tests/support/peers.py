"""Stand-ins that speak the uniqueid, policy, metadata and archive wire protocols, for what the
real published services cannot be made to do on demand: answer 503 for a while (FlakyApp),
forget what they acknowledged, or hand out a range twice. Everything else in the tests meets
the real published services (``published.py``).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

MIMETYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


class PeerApp:
    """Answers one peer's requests: ``handle(method, path, query, headers, body) -> (status, json)``."""

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers, body: bytes):
        raise NotImplementedError


class MetadataApp(PeerApp):
    """``PUT /ingest``: stores the document unless a Files object has a malformed mimetype."""

    def __init__(self) -> None:
        self.accepted: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()

    def handle(self, method, path, query, headers, body):
        if method != "PUT" or path != "/ingest":
            return 404, {"status": "404 Not Found", "message": f"no {method} {path}"}
        try:
            document = json.loads(body)
        except ValueError:
            return 400, {"status": "error", "message": "body is not JSON"}
        if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
            return 400, {"status": "error", "message": "metadata must be a list of objects"}
        for item in document:
            if item.get("destinationTable") == "Files" and "mimetype" in item \
                    and not MIMETYPE.match(str(item["mimetype"])):
                return 400, {"status": "error", "message": f"invalid mimetype {item['mimetype']!r}"}
        with self.lock:
            self.accepted.append(document)
        return 200, {"status": "success"}

    def transaction(self, job_id: int) -> list[dict[str, Any]] | None:
        """Return the latest accepted document whose ``Transactions._id`` is ``job_id``."""
        with self.lock:
            for document in reversed(self.accepted):
                for item in document:
                    if item.get("destinationTable") == "Transactions._id" and item.get("value") == job_id:
                        return document
        return None


class FlakyApp(PeerApp):
    """Answer the first ``failures`` requests with 503, then behave like ``app``."""

    def __init__(self, app: PeerApp, failures: int) -> None:
        self.app = app
        self.failures = failures
        self.requests = 0
        self.lock = threading.Lock()

    def handle(self, method, path, query, headers, body):
        with self.lock:
            self.requests += 1
            failing = self.requests <= self.failures
        if failing:
            return 503, {"status": "503 Service Unavailable", "message": "busy, try later"}
        return self.app.handle(method, path, query, headers, body)


def _handler_for(app: PeerApp):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload, *extra = app.handle(self.command, url.path, parse_qs(url.query), self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _TrackingServer(ThreadingHTTPServer):
    """Remembers open connections so that stopping the server really takes the peer down."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set = set()

    def get_request(self):
        request, address = super().get_request()
        self.connections.add(request)
        return request, address

    def shutdown_request(self, request) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        import socket

        for request in list(self.connections):
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)


class PeerServer:
    """Serve a ``PeerApp`` on 127.0.0.1; ``stop()`` and ``start()`` again keep the same port."""

    def __init__(self, app: PeerApp | None, port: int = 0, handler: Any = None) -> None:
        self.app = app
        self.handler = handler
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> PeerServer:
        self.server = _TrackingServer(("127.0.0.1", self.port), self.handler or _handler_for(self.app))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server.close_connections()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
