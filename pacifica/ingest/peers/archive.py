"""The archive: the Pacifica Archive Interface over HTTP, or a local directory."""

from __future__ import annotations

import contextlib
import ctypes
import email.utils
import errno
import fcntl
import http.client
import json
import logging
import os
import select
import shutil
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import cast

import requests
from requests.adapters import HTTPAdapter

from ...core.http import lean_call
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

    # How long the first answer's connection is watched for the server closing it (seconds).
    PROBE_WAIT = 0.2
    # The gate (or, without it, the facility's archive_concurrency) decides how many at once.
    max_concurrency = UNLIMITED
    copies_ranges = False

    def __init__(self, url: str, session: requests.Session, confirm: bool = True,
                 gate: ArchiveGate | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.confirm = confirm
        self.gate = gate or _NO_GATE
        # None until asked: whether the archive keeps a connection open after answering.
        self.keep_alive: bool | None = None

    def keeps_connections(self) -> bool:
        """Ask the archive (HEAD of its root, once) whether it keeps a connection open after
        answering; True when that cannot be told (the client then learns it from a failure)."""
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme != "http" or self.session.proxies or not parsed.hostname:
            return True
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80,
                                                timeout=getattr(self.session, "default_timeout", None) or 60)
        try:
            connection.request("HEAD", (parsed.path or "") + "/")
            connection.getresponse().read()
            ready, _, _ = select.select([connection.sock], [], [], self.PROBE_WAIT)
            closed = bool(ready) and connection.sock.recv(1, socket.MSG_PEEK) == b""
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

    def _stored_size(self, file_id: int) -> int | None:
        url = self._file_url(file_id)
        try:
            response = self._request("HEAD", url)
        except (PeerRejected, PeerUnavailable) as exc:
            # The posix backend answers HEAD of a missing file with a bare 500 (a HEAD answer has
            # no body to say more); other backends answer 404.
            if _missing(exc) or (exc.status == 500 and exc.message is None):
                return None
            raise
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


class LocalArchive:
    """Keep archived files in a local directory, each under its file id.

    A file is written under ``.incoming/`` and renamed into place, so the archive only ever shows
    whole files with exactly the bytes sent. ``make_durable`` then flushes a batch of files to
    disk in one go: one ``fsync`` per file costs a journal commit each, which for thousands of
    small files would take longer than everything else together.
    """

    INCOMING = ".incoming"
    # Files are written one at a time: on a local disk the work is a handful of system calls per
    # file, and threads doing them at once contend for the directory and the GIL (10,000 x 4 KiB:
    # 1.0 s in one thread, 2.8 s in two, 4.7 s in four).
    max_concurrency = 1
    copies_ranges = True
    # Leftovers of killed writers are looked for at most this often (seconds).
    SWEEP_INTERVAL = 10.0
    # Up to this many files are synced one by one; more, and the whole filesystem is synced once.
    FSYNC_EACH_MAX = 16

    def __init__(self, root: str) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._incoming = os.path.join(root, self.INCOMING)
        self._ready = False
        self._swept = float("-inf")

    def path(self, file_id: int) -> str:
        """Return where ``file_id`` is kept."""
        return os.path.join(self.root, str(int(file_id)))

    def _begin(self, file_id: int) -> str:
        """Return a fresh temporary path for writing ``file_id``."""
        if not self._ready:
            os.makedirs(self._incoming, exist_ok=True)
            self._ready = True
        now = time.monotonic()
        if now - self._swept >= self.SWEEP_INTERVAL:
            self._swept = now
            self._remove_leftovers()
        return os.path.join(self._incoming, f"{int(file_id)}-{os.getpid()}-{uuid.uuid4().hex}")

    def _remove_leftovers(self) -> None:
        """Remove temporary files whose writer died (a killed worker's partial write)."""
        for name in os.listdir(self._incoming):
            pid = name.split("-")[1] if name.count("-") >= 2 else ""
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._incoming, name))

    def _commit(self, file_id: int, temp: str, written: int, size: int) -> None:
        if written != size:
            raise PeerRejected(PEER, self.url, f"file {file_id}: received {written} of {size} bytes")
        os.replace(temp, self.path(file_id))

    @contextlib.contextmanager
    def _writing(self, file_id: int) -> Iterator[str]:
        """A temporary path to write ``file_id`` to; removed afterwards unless committed, and any
        ``OSError`` (a full disk, say) becomes ``PeerUnavailable``."""
        try:
            temp = self._begin(file_id)
            try:
                yield temp
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: {exc}") from None

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Store exactly ``size`` bytes from ``body`` as ``file_id`` (durable after ``make_durable``)."""
        with self._writing(file_id) as temp:
            written = 0
            with open(temp, "wb") as out:
                for block in body:
                    out.write(block)
                    written += len(block)
                out.flush()
                os.utime(out.fileno(), (mtime, mtime))
            self._commit(file_id, temp, written, size)

    def put_range(self, file_id: int, source: int, offset: int, size: int, mtime: float,
                  check: Callable[[], None] | None = None) -> None:
        """Store ``size`` bytes at ``offset`` of the open file ``source`` as ``file_id``.

        The kernel copies the bytes (``copy_file_range``: no pass through this process, and on
        filesystems that share extents no copy at all). ``check`` runs before the file is put in
        place; if it raises, the file is not stored.
        """
        with self._writing(file_id) as temp:
            with open(temp, "wb") as out:
                written = _copy_range(source, out.fileno(), offset, size)
                os.utime(out.fileno(), (mtime, mtime))
            if check is not None:
                check()
            self._commit(file_id, temp, written, size)

    def make_durable(self, file_ids: Iterable[int]) -> None:
        """Flush the files ``file_ids`` (and their names) to disk."""
        file_ids = list(file_ids)
        if not file_ids:
            return
        try:
            if len(file_ids) <= self.FSYNC_EACH_MAX:
                for file_id in file_ids:
                    with contextlib.suppress(FileNotFoundError), open(self.path(file_id), "rb") as handle:
                        os.fsync(handle.fileno())
            else:
                _syncfs(self.root)
            directory = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"flushing {len(file_ids)} files to disk: {exc}") from None

    def patch(self, file_id: int, source: str) -> None:
        """Move the file at ``source`` into place as ``file_id`` (renamed, or copied across filesystems)."""
        if not os.path.isfile(source):
            raise PeerRejected(PEER, self.url, f"file {file_id}: source {source} is not a file")
        try:
            temp = self._begin(file_id)
            shutil.move(source, temp)
            os.replace(temp, self.path(file_id))
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: cannot move {source}: {exc}") from None

    def delete(self, file_id: int) -> None:
        """Remove ``file_id``; a file that is not there is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(file_id))

    def stored_size(self, file_id: int) -> int | None:
        """The size of the file kept as ``file_id``, or None if there is none."""
        try:
            return os.stat(self.path(file_id)).st_size
        except FileNotFoundError:
            return None


def _copy_range(source: int, target: int, offset: int, size: int) -> int:
    """Copy ``size`` bytes at ``offset`` of ``source`` to ``target``; return how many were copied."""
    copied = 0
    try:
        while copied < size:
            count = os.copy_file_range(source, target, min(size - copied, 1 << 30), offset + copied)
            if count == 0:
                return copied
            copied += count
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    # No in-kernel copy between these files: copy through a buffer instead.
    while copied < size:
        block = os.pread(source, min(size - copied, 1 << 22), offset + copied)
        if not block:
            break
        os.write(target, block)
        copied += len(block)
    return copied


def _syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (``syncfs``), or every filesystem where that is missing."""
    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if syncfs(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(descriptor)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a killed process that is not yet reaped does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
