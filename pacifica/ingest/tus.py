"""Resumable uploads (tus 1.0.0: core, creation, termination, checksum, expiration) on the volume.

An upload is its job: ``<job_id>.tus`` holds the bytes received so far (its size is the
offset) and ``<job_id>.tus.json`` what the creation said (length, user, metadata). Appends are
serialised by a lock on the data file. A chunk sent with ``Upload-Checksum`` is kept only if it
arrived whole and matches; a chunk without one keeps every byte that arrived, so an upload cut
at any byte continues from there. The last byte turns the data file into ``<job_id>.tar``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import UploadError
from .spool import Spool, _remove, _write_all, _write_json_atomically

logger = logging.getLogger(__name__)

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256", "sha512")
METADATA_LIMIT = 64 * 1024


class TusError(UploadError):
    """A tus request that cannot be honoured, with the HTTP status to answer."""


@dataclasses.dataclass
class Upload:
    """What the creation of an upload said."""

    job_id: int
    length: int
    user: str
    metadata: dict[str, str]
    created: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


def parse_metadata(header: str | None) -> dict[str, str]:
    """Decode ``Upload-Metadata`` (``key base64value, key2 ...``); 400 if it is malformed."""
    if not header:
        return {}
    if len(header) > METADATA_LIMIT:
        raise TusError(f"Upload-Metadata is longer than {METADATA_LIMIT} characters", 400)
    result = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if not parts[0] or len(parts) > 2:
            raise TusError(f"Upload-Metadata pair {pair.strip()[:60]!r} is not 'key base64value'", 400)
        try:
            value = base64.b64decode(parts[1], validate=True).decode("utf-8") if len(parts) == 2 else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(f"Upload-Metadata value of {parts[0][:40]!r} is not base64 of UTF-8 text", 400) from None
        result[parts[0]] = value
    return result


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """Decode ``Upload-Checksum`` (``algorithm base64digest``); 400 if it is malformed or unknown."""
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2:
        raise TusError("Upload-Checksum must be '<algorithm> <base64 digest>'", 400)
    algorithm = parts[0].lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(f"checksum algorithm {parts[0][:20]!r} is not supported "
                       f"(use one of {', '.join(CHECKSUM_ALGORITHMS)})", 400)
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise TusError("the Upload-Checksum digest is not base64", 400) from None
    return algorithm, digest


class TusStore:
    """The resumable uploads kept on the volume."""

    def __init__(self, spool: Spool, expiry_hours: float) -> None:
        self.spool = spool
        self.expiry = expiry_hours * 3600

    def data_path(self, job_id: int) -> str:
        """Where the bytes of ``job_id`` received so far are kept."""
        return self.spool.resumable_path(job_id)

    def info_path(self, job_id: int) -> str:
        """Where the creation request of ``job_id`` is kept."""
        return self.data_path(job_id) + ".json"

    def create(self, job_id: int, length: int, user: str, metadata: dict[str, str]) -> Upload:
        """Start an upload of ``length`` bytes for ``user``."""
        upload = Upload(int(job_id), int(length), user, metadata, time.time())
        os.makedirs(self.spool.volume_path, exist_ok=True)
        with open(self.data_path(job_id), "xb"):
            pass
        _write_json_atomically(self.info_path(job_id), upload.as_dict())
        return upload

    def get(self, job_id: int) -> Upload | None:
        """The upload ``job_id``, or None when there is none (never created, finished, ended)."""
        try:
            with open(self.info_path(job_id), encoding="utf-8") as handle:
                upload = Upload(**json.load(handle))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return upload if os.path.exists(self.data_path(job_id)) else None

    def offset(self, job_id: int) -> int:
        """How many bytes of ``job_id`` have arrived."""
        return os.path.getsize(self.data_path(job_id))

    def expires_at(self, job_id: int) -> float | None:
        """When ``job_id`` expires if nothing more arrives (None: never)."""
        if self.expiry <= 0:
            return None
        return os.path.getmtime(self.data_path(job_id)) + self.expiry

    @contextlib.contextmanager
    def _locked(self, job_id: int) -> Iterator[int]:
        """The data file open for writing, held by this request alone; 423 while another writes."""
        try:
            descriptor = os.open(self.data_path(job_id), os.O_WRONLY)
        except FileNotFoundError:
            raise TusError(f"upload {job_id} does not exist", 404) from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TusError(f"upload {job_id} is being written by another request", 423) from None
            yield descriptor
        finally:
            os.close(descriptor)

    def append(self, upload: Upload, offset: int, body: Any, declared: int | None,
               checksum: tuple[str, bytes] | None, block_size: int,
               progress: Callable[[int], None] | None = None) -> int:
        """Write a PATCH body at ``offset``; return the new offset.

        409 when ``offset`` is not where the upload stands, 413 when the body would pass the
        upload's length, 460 when the chunk does not match ``checksum`` (nothing of it is kept),
        507 when the volume is full (nothing of the chunk is kept). ``progress`` is called with
        the offset now and then while the body arrives.
        """
        job_id = upload.job_id
        with self._locked(job_id) as descriptor:
            current = os.fstat(descriptor).st_size
            if offset != current:
                raise TusError(f"Upload-Offset is {offset}, the upload stands at {current}", 409)
            if declared is not None and current + declared > upload.length:
                raise TusError(f"the chunk of {declared} bytes would pass the upload's length of "
                               f"{upload.length} bytes (at {current})", 413)
            hasher = hashlib.new(checksum[0]) if checksum else None
            written = 0
            buffer = memoryview(bytearray(block_size))
            reported = time.monotonic()
            os.lseek(descriptor, current, os.SEEK_SET)
            out = os.fdopen(os.dup(descriptor), "wb", buffering=0)
            complete = False
            try:
                with out:
                    while True:
                        try:
                            count = body.readinto(buffer)
                        except OSError as exc:  # the client went away: what arrived stays
                            logger.info("upload %s: the connection broke after %d bytes: %s", job_id, written, exc)
                            break
                        if not count:
                            break
                        if current + written + count > upload.length:
                            raise TusError(f"the body passes the upload's length of {upload.length} bytes", 413)
                        _write_all(out, buffer[:count])
                        written += count
                        if hasher is not None:
                            hasher.update(buffer[:count])
                        if progress is not None and time.monotonic() - reported >= 1.0:
                            reported = time.monotonic()
                            progress(current + written)
                complete = declared is None or written == declared
                if hasher is not None:
                    if not complete:
                        raise TusError(f"the chunk ended after {written} of {declared} bytes", 400)
                    if hasher.digest() != checksum[1]:
                        raise TusError(f"the chunk does not match its {checksum[0]} checksum", 460)
            except OSError as exc:
                os.ftruncate(descriptor, current)
                if exc.errno == errno.ENOSPC:
                    raise TusError(f"the volume is full after {current} bytes of the upload", 507) from None
                raise
            except BaseException:
                # A chunk with a checksum is all or nothing; without one, whatever arrived is kept.
                if hasher is not None:
                    os.ftruncate(descriptor, current)
                else:
                    os.fsync(descriptor)
                raise
            os.fsync(descriptor)
            if not complete:
                logger.info("upload %s: the chunk stopped after %d of %s bytes; kept", job_id, written, declared)
            return current + written

    def finish(self, upload: Upload) -> str:
        """Move a complete upload to the job's bundle path; return it."""
        path = self.spool.bundle_path(upload.job_id)
        os.replace(self.data_path(upload.job_id), path)
        _remove(self.info_path(upload.job_id))
        return path

    def discard(self, job_id: int) -> None:
        """Remove every file of the upload ``job_id``."""
        _remove(self.data_path(job_id))
        _remove(self.info_path(job_id))

    def unfinished(self) -> list[int]:
        """The job ids of every upload still on the volume."""
        try:
            names = os.listdir(self.spool.volume_path)
        except FileNotFoundError:
            return []
        return sorted(int(name[:-4]) for name in names if name.endswith(".tus") and name[:-4].isdigit())

    def expired(self, now: float | None = None) -> list[int]:
        """The uploads that received nothing for longer than the expiry time."""
        if self.expiry <= 0:
            return []
        now = time.time() if now is None else now
        found = []
        for job_id in self.unfinished():
            with contextlib.suppress(FileNotFoundError):
                if os.path.getmtime(self.data_path(job_id)) + self.expiry < now:
                    found.append(job_id)
        return found

