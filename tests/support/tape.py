"""A tape-backed archive interface: the published wire protocol, the behaviour of a tape library.

Files start on tape. ``POST /<id>`` asks for a recall; a recalled file reports
``X-Pacifica-File-Storage-Media: disk`` only once the test opens ``recalls`` (the robot is slow).
Files in ``held`` stay on tape whatever happens. ``GET`` streams a file in blocks, ``pace``
seconds apart, so a test can watch a pull in flight.
Every request is counted in ``calls``.
"""

from __future__ import annotations

import collections
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.peers import PeerServer

BLOCK = 64 * 1024


class TapeArchive:
    """Serve ``files`` (id -> bytes) on 127.0.0.1 as a tape-backed archive interface."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.recalls = threading.Event()
        self.recalled: set[str] = set()
        self.held: set[str] = set()
        self.pace = 0.0
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.Lock()
        self.server = PeerServer(None, handler=_handler(self))

    def add(self, file_id: str, data: bytes) -> None:
        """Put a file on tape."""
        with self.lock:
            self.files[file_id] = data
            self.recalled.discard(file_id)

    def on_disk(self, file_id: str) -> bool:
        return file_id in self.recalled and file_id not in self.held and self.recalls.is_set()

    def start(self) -> TapeArchive:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url


def _handler(tape: TapeArchive):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _file(self) -> tuple[str, bytes | None]:
            file_id = self.path.strip("/")
            with tape.lock:
                tape.calls[(self.command, file_id)] += 1
                return file_id, tape.files.get(file_id)

        def do_POST(self) -> None:
            file_id, data = self._file()
            if data is None:
                self._reply(404, {}, b'{"message": "no such file"}')
                return
            tape.recalled.add(file_id)
            self._reply(200, {"Content-Type": "application/json"}, b'{"message": "File was staged"}')

        def do_HEAD(self) -> None:
            file_id, data = self._file()
            if data is None:
                self._reply(404, {})
                return
            media = "disk" if tape.on_disk(file_id) else "tape"
            self._reply(200, {"X-Pacifica-Messsage": "File was found", "X-Content-Length": str(len(data)),
                              "Last-Modified": formatdate(1_600_000_000, usegmt=True), "X-Pacifica-Ctime": "1600000000",
                              "X-Pacifica-File-Storage-Media": media,
                              "X-Pacifica-Bytes-Per-Level": f"({len(data) if media == 'disk' else 0}, 0, {len(data)})"})

        def do_GET(self) -> None:
            file_id, data = self._file()
            if data is None or not tape.on_disk(file_id):
                self._reply(500 if data is not None else 404, {}, b'{"message": "file is not on disk"}')
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for start in range(0, len(data), BLOCK):
                self.wfile.write(data[start:start + BLOCK])
                if tape.pace:
                    time.sleep(tape.pace)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
