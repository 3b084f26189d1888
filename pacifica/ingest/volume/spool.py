"""The volume: where bundles, move documents and per-job working files are kept.

Layout under ``volume_path``: ``<job_id>.tar`` (an uploaded bundle), ``<job_id>.json`` (a move
document), ``<job_id>.job.json`` (the context its stages receive) and ``<job_id>.manifest.sqlite3``
(what 'load metadata' derived: file ids and members, see ``manifest``; an earlier version kept
it as ``<job_id>.meta.json``), ``<job_id>.tar.sha1.json`` (the SHA-1 of
each member, taken while the bundle was received), ``<job_id>.tar.staged/`` (its large members,
when they were staged as they arrived: see ``arrival``), ``<job_id>.tus`` and ``<job_id>.tus.json``
(a resumable upload still arriving, see ``tus``).
A bundle being received is written as ``<job_id>.tar.part`` and renamed when complete, so a
``.tar`` on the volume is always a whole body.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from typing import Any, BinaryIO

from ..bundles import digests
from ..common.errors import UploadError
from ..common.message import JobMessage, as_message
from .arrival import BundleWriter, discard_staged, staged_dir
from .body import Body, ReadBody

logger = logging.getLogger(__name__)


class Spool:
    """The service's working directory on the shared volume."""

    def __init__(self, volume_path: str, block_size: int) -> None:
        self.volume_path = volume_path
        self.block_size = block_size

    def bundle_path(self, job_id: int) -> str:
        """Return where the uploaded tar of ``job_id`` is kept."""
        return os.path.join(self.volume_path, f"{int(job_id)}.tar")

    def resumable_path(self, job_id: int) -> str:
        """Return where the bytes of a resumable (tus) upload of ``job_id`` gather until complete."""
        return os.path.join(self.volume_path, f"{int(job_id)}.tus")

    def move_path(self, job_id: int) -> str:
        """Return where the move document of ``job_id`` is kept."""
        return os.path.join(self.volume_path, f"{int(job_id)}.json")

    def manifest_path(self, job_id: int) -> str:
        """Return where the manifest of ``job_id`` (what 'load metadata' derived) is kept."""
        return os.path.join(self.volume_path, f"{int(job_id)}.manifest.sqlite3")

    def sidecar_path(self, job_id: int) -> str:
        """Return where an earlier version kept what 'load metadata' derived for ``job_id``."""
        return os.path.join(self.volume_path, f"{int(job_id)}.meta.json")

    def ledger_path(self, job_id: int) -> str:
        """Return where the files of ``job_id`` started and verified in the archive are listed."""
        return os.path.join(self.volume_path, f"{int(job_id)}.sent")

    def job_path(self, job_id: int) -> str:
        """Return where the message context of ``job_id`` is kept (to resume it after a crash)."""
        return os.path.join(self.volume_path, f"{int(job_id)}.job.json")

    def write_job(self, job_id: int, ctx: JobMessage) -> None:
        """Durably store the context every stage of ``job_id`` receives."""
        write_json_atomically(self.job_path(job_id), ctx)

    def read_job(self, job_id: int) -> JobMessage | None:
        """Return the stored context of ``job_id``, or None."""
        try:
            with open(self.job_path(job_id), encoding="utf-8") as handle:
                return as_message(json.load(handle))
        except (FileNotFoundError, ValueError):
            return None

    def free_space(self) -> int:
        """Return the bytes free on the volume's filesystem."""
        os.makedirs(self.volume_path, exist_ok=True)
        return shutil.disk_usage(self.volume_path).free

    def receive(self, job_id: int, body: Body | BinaryIO, expected: int | None = None, limit: int = 0,
                stage_members: bool = False) -> int:
        """Copy an upload body (``readinto`` or ``read``) to the bundle path; return the byte count.

        ``expected`` is the declared length: a body that ends sooner was cut off. ``limit`` (if
        not 0) caps a body of unknown length. Both, an empty body, and a full disk raise
        ``UploadError``; on any error the partial file is removed. The tar's members are hashed
        on the way (``tarhash``), so the worker need not read them a second time; with
        ``stage_members`` its large members are written to files of their own (``arrival``).
        """
        os.makedirs(self.volume_path, exist_ok=True)
        final = self.bundle_path(job_id)
        partial = final + ".part"
        received = 0
        reader: Body = body if hasattr(body, "readinto") else ReadBody(body)
        # Two buffers in turn: one is hashed and written in the background while the next block
        # is received.
        buffers = [memoryview(bytearray(self.block_size)) for _ in range(2)]
        discard_staged(final)  # a staged member of an earlier, failed receive of this job
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        writer = BundleWriter(fd, staged_dir(final) if stage_members else None)
        hasher = digests.StreamHasher(writer)
        hashing = digests.Overlapped(hasher)
        try:
            try:
                while True:
                    buffer = buffers[0]
                    count = reader.readinto(buffer)
                    if not count:
                        break
                    received += count
                    if limit and received > limit:
                        raise UploadError(f"the body is larger than the {limit} byte limit", 413, received, expected)
                    hashing.update(buffer[:count])
                    buffers.reverse()
                hashing.close()
                writer.finish(received)
            finally:
                with contextlib.suppress(OSError):  # the error that ended the loop is the one raised
                    hashing.close()
                writer.abandon()
                os.close(fd)
            if expected is not None and received != expected:
                raise UploadError(f"the connection closed after {received} of the {expected} bytes "
                                  "announced by Content-Length", 400, received, expected)
            if received == 0:
                raise UploadError("the request body is empty: send the bundle (a tar) as the body")
            digests.save(hasher, final, partial)
            os.replace(partial, final)
        except OSError as exc:
            self._drop_arrival(final)
            if exc.errno == errno.ENOSPC:
                raise UploadError(f"the volume is full after {received} bytes", 507, received, expected) from None
            raise UploadError(f"the body could not be read or stored after {received} bytes: {exc}", 400, received,
                              expected) from None
        except BaseException:
            self._drop_arrival(final)
            raise
        if writer.staged:
            logger.info("job %s: %d members staged as they arrived", job_id, writer.staged)
        return received

    @staticmethod
    def _drop_arrival(final: str) -> None:
        remove(final + ".part")
        digests.discard(final)
        discard_staged(final)

    def write_move(self, job_id: int, document: BinaryIO) -> str:
        """Durably store a move request's JSON document (a file, copied as it is); return its path."""
        path = self.move_path(job_id)
        temp = f"{path}.tmp{os.getpid()}"
        try:
            with open(temp, "wb") as handle:
                shutil.copyfileobj(document, handle, self.block_size)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            remove(temp)
            raise
        return path

    def read_sidecar(self, job_id: int) -> dict[str, Any] | None:
        """Return what an earlier version's 'load metadata' derived for ``job_id``, or None."""
        try:
            with open(self.sidecar_path(job_id), encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def exists(self, job_id: int) -> list[bool]:
        """Which of the job's files (bundle, move document, manifest, context) are on the volume."""
        return [os.path.exists(name) for name in (self.bundle_path(job_id), self.move_path(job_id),
                                                  self.manifest_path(job_id), self.job_path(job_id))]

    def discard_partial(self, job_id: int) -> None:
        """Remove the part of a bundle whose upload never finished."""
        self._drop_arrival(self.bundle_path(job_id))

    def holds(self, path: str) -> bool:
        """True if ``path`` (symbolic links resolved) lies inside the volume."""
        root = os.path.realpath(self.volume_path)
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    def discard(self, job_id: int, path: str | None = None) -> None:
        """Remove every file the job kept on the volume (after it completed).

        ``path`` is the bundle the job ran from; it is removed only if it lies inside the volume,
        so ``pacifica-ingest-cmd retry --path`` never deletes an operator's own file.
        """
        path = path if path and self.holds(path) else None
        for name in (path, self.bundle_path(job_id), self.move_path(job_id), self.manifest_path(job_id),
                     self.sidecar_path(job_id), self.job_path(job_id), self.ledger_path(job_id),
                     self.resumable_path(job_id), self.resumable_path(job_id) + ".json"):
            if name:
                remove(name)
        for name in {path, self.bundle_path(job_id)}:
            if name:
                digests.discard(name)
                discard_staged(name)


def write_json_atomically(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` durably, never leaving a half-written file there."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temp = f"{path}.tmp{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def remove(path: str) -> None:
    """Remove the file ``path``, if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_all(out: Any, data: memoryview) -> None:
    """Write all of ``data`` to an unbuffered file (a single write may take only part of it)."""
    while data:
        data = data[out.write(data):]

