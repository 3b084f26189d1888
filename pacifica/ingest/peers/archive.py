"""The archive: the Pacifica Archive Interface over HTTP, or a local directory."""

from __future__ import annotations

import contextlib
import email.utils
import errno
import fcntl
import http.client
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import cast

import requests
from requests.adapters import HTTPAdapter

from ...core.http import call, lean_call, transport_error
from ..common.errors import ConnectionClosed, PeerError, PeerRejected, PeerUnavailable
from .base import UNLIMITED

logger = logging.getLogger(__name__)

PEER = "archive interface"


class _SizedBody:
    """An iterable of blocks with a known total length: requests then sends exactly those blocks
    with a Content-Length header (a plain generator would be sent chunked)."""

    def __init__(self, blocks: Iterable[bytes], size: int) -> None:
        self.blocks = blocks
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(self.blocks)


class HttpArchive:
    """Store files in the Pacifica Archive Interface; with ``confirm``, check each stored size with HEAD.

    The published archive interface, as its own documents deploy it, needs two precautions:

    - Its posix backend keeps the file a request works on in one object shared by all request
      threads, so concurrent requests close, truncate or even delete each other's files. With a
      ``gate`` (see ``ArchiveGate``), this service sends it one request at a time, from every
      thread and every process on the volume.
    - Under uWSGI ``--http-socket`` it answers HTTP/1.1 without ``Connection: close`` and then
      closes the socket. Before its first request this client asks once whether the archive
      keeps a connection open after answering (``keeps_connections``); if not, every request
      opens its own connection. Should a request still meet a connection the server had closed,
      the client switches the same way and the request is sent again at once.
    """

    # The gate (or, without it, the facility's archive_concurrency) decides how many at once.
    max_concurrency = UNLIMITED
    copies_ranges = False
    adopts_files = False

    def __init__(self, url: str, session: requests.Session, confirm: bool = True,
                 gate: ArchiveGate | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.confirm = confirm
        self.gate = gate or _NO_GATE
        # None until asked: whether the archive keeps a connection open after answering.
        self.keep_alive: bool | None = None

    def keeps_connections(self) -> bool:
        """Ask the archive (two HEADs of its root on one connection, once) whether it keeps a
        connection open after answering; True when that cannot be told (the client then learns
        it from a failure).

        The second HEAD is the question: a server that closes after each answer loses it (reset,
        or an end of stream instead of an answer), whatever the moment it closed. Watching the
        socket for the close instead would cost a wait on every server that keeps it open.
        """
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme != "http" or self.session.proxies or not parsed.hostname:
            return True
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80,
                                                timeout=getattr(self.session, "default_timeout", None) or 60)
        root = (parsed.path or "") + "/"
        try:
            connection.request("HEAD", root)
            connection.getresponse().read()
            try:
                connection.request("HEAD", root)
                connection.getresponse().read()
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                    http.client.RemoteDisconnected):
                closed = True
            else:
                closed = False
        except (OSError, http.client.HTTPException):
            return True
        finally:
            connection.close()
        if closed:
            logger.info("the archive interface at %s closes each connection after answering (uWSGI "
                        "--http-socket does, without saying so); every request opens its own", self.url)
        return not closed

    def _file_url(self, file_id: int) -> str:
        return f"{self.url}/{int(file_id)}"

    def _request(self, method: str, url: str, body=None, headers: dict[str, str] | None = None):
        """One request on a pooled connection; see the class docstring for closed connections."""
        headers = dict(headers or {})
        if self.keep_alive is None:
            self.keep_alive = self.keeps_connections()
        if not self.keep_alive:
            headers["Connection"] = "close"
        try:
            return lean_call(self.session, PEER, method, url, body=body, headers=headers, close=not self.keep_alive)
        except PeerUnavailable as exc:
            if not self.keep_alive or not exc.connection_lost:
                raise
            logger.warning("the archive interface at %s closed a kept-alive connection without saying so "
                           "(uWSGI --http-socket does); every request now opens its own connection", self.url)
            self.keep_alive = False
            # The other idle connections in the pool are just as dead: drop them all at once
            # rather than meet each one in a failed request.
            cast(HTTPAdapter, self.session.get_adapter(url)).poolmanager.clear()
            if body is not None:
                # The body was partly consumed: the caller sends the file again, at once.
                raise ConnectionClosed(exc.peer, exc.url, exc.detail, connection_lost=True) from None
            return self._request(method, url, headers=headers)

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Stream ``size`` bytes from ``body`` to the archive as ``file_id``."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        }
        with self.gate:
            self._request("PUT", self._file_url(file_id), body=_SizedBody(body, size), headers=headers)
            if self.confirm:
                self._check_stored(file_id, size)

    def stored_size(self, file_id: int) -> int | None:
        """The size the archive reports for ``file_id``, or None if it holds no such file."""
        with self.gate:
            return self._stored_size(file_id)

    def media(self, file_id: int) -> str | None:
        """Where the archive says it keeps ``file_id`` (its ``X-Pacifica-File-Storage-Media``:
        'disk', 'tape'), or None if it holds no such file."""
        with self.gate:
            response = self._head(file_id)
        if response is None:
            return None
        return response.headers.get("X-Pacifica-File-Storage-Media", "disk").strip().lower() or "disk"

    def recall(self, file_id: int, wait: float, poll: float = 1.0) -> bool:
        """Ask the archive to stage ``file_id`` from tape to disk (POST), then ask (HEAD) until it
        is there or ``wait`` seconds passed; whether it is on disk."""
        with self.gate:
            self._request("POST", self._file_url(file_id))
        deadline = time.monotonic() + wait
        while self.media(file_id) == "tape":
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def read(self, file_id: int, block_size: int) -> Iterator[bytes]:
        """The bytes the archive holds for ``file_id`` (a GET, streamed; the gate is held until
        the generator ends, as around a PUT)."""
        url = self._file_url(file_id)
        if self.keep_alive is None:
            self.keep_alive = self.keeps_connections()
        headers = {} if self.keep_alive else {"Connection": "close"}
        with self.gate:
            try:
                response = call(self.session, PEER, "GET", url, stream=True, headers=headers)
            except (PeerRejected, PeerUnavailable) as exc:
                # The posix backend answers a GET of a missing file with 500 and ENOENT.
                if _missing(exc):
                    raise PeerRejected(PEER, url, f"file {int(file_id)} does not exist", status=404) from None
                raise
            with response:
                try:
                    yield from response.iter_content(block_size)
                except requests.RequestException as exc:
                    raise transport_error(PEER, url, exc) from None

    def _head(self, file_id: int):
        """The archive's answer to HEAD of ``file_id``, or None if it holds no such file."""
        try:
            return self._request("HEAD", self._file_url(file_id))
        except (PeerRejected, PeerUnavailable) as exc:
            # The posix backend answers HEAD of a missing file with a bare 500 (a HEAD answer has
            # no body to say more); other backends answer 404.
            if _missing(exc) or (exc.status == 500 and exc.message is None):
                return None
            raise

    def _stored_size(self, file_id: int) -> int | None:
        url = self._file_url(file_id)
        response = self._head(file_id)
        if response is None:
            return None
        stored_path = response.headers.get("X-Pacifica-File", "")
        stored_size = response.headers.get("X-Content-Length", "")
        if not stored_path.endswith(f"/{int(file_id)}") or not stored_size.isdigit():
            raise PeerUnavailable(PEER, url, f"HEAD answered for {stored_path!r} with size {stored_size!r}")
        return int(stored_size)

    def _check_stored(self, file_id: int, size: int) -> None:
        """Ask the archive what it holds for ``file_id`` and compare the size with what was sent.

        The published archive interface answers 201 with the request's own Content-Length, even
        when a concurrent request closed its file under it, so its PUT reply proves nothing.
        """
        stored = self._stored_size(file_id)
        if stored != size:
            raise PeerUnavailable(PEER, self._file_url(file_id),
                                  f"after the upload the archive reports {stored!r} bytes, not the {size} bytes sent")

    def make_durable(self, file_ids: Iterable[int]) -> None:
        """Nothing to do: each PUT is answered once the archive interface has written the file."""

    def patch(self, file_id: int, source: str) -> None:
        """Ask the archive to move ``source`` into place as ``file_id``."""
        with self.gate:
            self._request("PATCH", self._file_url(file_id), body=json.dumps({"path": source}).encode(),
                          headers={"Content-Type": "application/json"})

    def delete(self, file_id: int) -> None:
        """Remove ``file_id`` from the archive and check that it is gone; a file that is already
        gone is fine."""
        with self.gate:
            try:
                self._request("DELETE", self._file_url(file_id))
            except (PeerRejected, PeerUnavailable) as exc:
                if not _missing(exc):
                    raise
            if self._stored_size(file_id) is not None:
                raise PeerUnavailable(PEER, self._file_url(file_id), "the file is still there after DELETE")


def _missing(exc: PeerError) -> bool:
    """Whether a refusal of the archive interface says that the file does not exist (404, or the
    posix backend's 500 reporting ENOENT)."""
    return exc.status == 404 or exc.os_errno == errno.ENOENT


class ArchiveGate:
    """One request at a time to an archive that cannot take more, from this whole deployment.

    A lock within the process (threads) and an ``fcntl`` lock on a file of the shared volume
    (processes, and hosts that share the volume), held around each request and its check.
    """

    def __init__(self, lock_path: str) -> None:
        self.lock_path = lock_path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> ArchiveGate:
        self._thread_lock.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():
                # A forked child (Celery prefork) opens its own: fcntl locks belong to a process.
                os.makedirs(os.path.dirname(self.lock_path) or ".", exist_ok=True)
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                self._pid = os.getpid()
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._fd is not None:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


_NO_GATE = contextlib.nullcontext()
