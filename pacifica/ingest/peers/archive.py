"""The archive: the Pacifica Archive Interface over HTTP, or a local directory."""

from __future__ import annotations

import contextlib
import email.utils
import os
import shutil
import uuid
from collections.abc import Iterable

import requests

from ..errors import PeerRejected, PeerUnavailable
from .base import call

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
    """Store files in the Pacifica Archive Interface."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def _file_url(self, file_id: int) -> str:
        return f"{self.url}/{int(file_id)}"

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Stream ``size`` bytes from ``body`` to the archive as ``file_id``."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        }
        call(self.session, PEER, "PUT", self._file_url(file_id), data=_SizedBody(body, size), headers=headers)
        self._check_stored(file_id, size)

    def _check_stored(self, file_id: int, size: int) -> None:
        """Ask the archive what it holds for ``file_id`` and compare the size with what was sent.

        The published archive interface answers 201 with the request's own Content-Length, even
        when a concurrent request closed its file under it (its posix backend keeps the open
        file on an object shared by all threads), so its PUT reply proves nothing.
        """
        url = self._file_url(file_id)
        response = call(self.session, PEER, "HEAD", url)
        stored_path = response.headers.get("X-Pacifica-File", "")
        stored_size = response.headers.get("X-Content-Length")
        if not stored_path.endswith(f"/{int(file_id)}") or stored_size != str(size):
            raise PeerUnavailable(PEER, url, f"after the upload the archive reports {stored_size!r} bytes at "
                                             f"{stored_path!r}, not the {size} bytes sent")

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

    A file is written to a temporary name, flushed to disk and renamed into place, so the
    archive only ever holds whole files with exactly the bytes sent.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.url = f"file://{root}"

    def path(self, file_id: int) -> str:
        """Return where ``file_id`` is kept."""
        return os.path.join(self.root, str(int(file_id)))

    def _temp(self, file_id: int) -> str:
        return os.path.join(self.root, f".tmp-{int(file_id)}-{os.getpid()}-{uuid.uuid4().hex}")

    def _remove_leftovers(self, file_id: int) -> None:
        """Remove temporary files of ``file_id`` whose writer died (a killed worker's partial write)."""
        prefix = f".tmp-{int(file_id)}-"
        for name in os.listdir(self.root):
            if not name.startswith(prefix):
                continue
            pid = int(name[len(prefix):].split("-", 1)[0] or 0)
            if pid and not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.root, name))

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Store exactly ``size`` bytes from ``body`` as ``file_id``."""
        os.makedirs(self.root, exist_ok=True)
        self._remove_leftovers(file_id)
        temp = self._temp(file_id)
        written = 0
        try:
            with open(temp, "wb") as out:
                for block in body:
                    out.write(block)
                    written += len(block)
                out.flush()
                os.fsync(out.fileno())
            if written != size:
                raise PeerRejected(PEER, self.url, f"file {file_id}: received {written} of {size} bytes")
            os.utime(temp, (mtime, mtime))
            os.replace(temp, self.path(file_id))
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: {exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def patch(self, file_id: int, source: str) -> None:
        """Move the file at ``source`` into place as ``file_id`` (renamed, or copied across filesystems)."""
        if not os.path.isfile(source):
            raise PeerRejected(PEER, self.url, f"file {file_id}: source {source} is not a file")
        os.makedirs(self.root, exist_ok=True)
        self._remove_leftovers(file_id)
        temp = self._temp(file_id)
        try:
            shutil.move(source, temp)
            os.replace(temp, self.path(file_id))
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: cannot move {source}: {exc}") from None

    def delete(self, file_id: int) -> None:
        """Remove ``file_id``; a file that is not there is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(file_id))


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
