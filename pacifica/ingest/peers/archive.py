"""The archive: the Pacifica Archive Interface over HTTP, or a local directory."""

from __future__ import annotations

import contextlib
import ctypes
import email.utils
import errno
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

import requests

from ..errors import PeerRejected, PeerUnavailable
from .base import call, lean_call

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
    """Store files in the Pacifica Archive Interface; with ``confirm``, check each stored size with HEAD."""

    def __init__(self, url: str, session: requests.Session, confirm: bool = True) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.confirm = confirm

    def _file_url(self, file_id: int) -> str:
        return f"{self.url}/{int(file_id)}"

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Stream ``size`` bytes from ``body`` to the archive as ``file_id``."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        }
        lean_call(self.session, PEER, "PUT", self._file_url(file_id), body=_SizedBody(body, size), headers=headers)
        if self.confirm:
            self._check_stored(file_id, size)

    def _check_stored(self, file_id: int, size: int) -> None:
        """Ask the archive what it holds for ``file_id`` and compare the size with what was sent.

        The published archive interface answers 201 with the request's own Content-Length, even
        when a concurrent request closed its file under it (its posix backend keeps the open
        file on an object shared by all threads), so its PUT reply proves nothing.
        """
        url = self._file_url(file_id)
        response = lean_call(self.session, PEER, "HEAD", url)
        stored_path = response.headers.get("X-Pacifica-File", "")
        stored_size = response.headers.get("X-Content-Length")
        if not stored_path.endswith(f"/{int(file_id)}") or stored_size != str(size):
            raise PeerUnavailable(PEER, url, f"after the upload the archive reports {stored_size!r} bytes at "
                                             f"{stored_path!r}, not the {size} bytes sent")

    def make_durable(self, file_ids: Iterable[int]) -> None:
        """Nothing to do: each PUT is answered once the archive interface has written the file."""

    def patch(self, file_id: int, source: str) -> None:
        """Ask the archive to move ``source`` into place as ``file_id``."""
        call(self.session, PEER, "PATCH", self._file_url(file_id), json={"path": source})

    def delete(self, file_id: int) -> None:
        """Remove ``file_id`` from the archive; a file that is already gone is fine."""
        try:
            call(self.session, PEER, "DELETE", self._file_url(file_id))
        except (PeerRejected, PeerUnavailable) as exc:
            # The archive interface answers 500 "No such file or directory" for a missing file.
            if "404" not in exc.detail and "No such file or directory" not in exc.detail:
                raise


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
    MAX_CONCURRENCY = 1
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
