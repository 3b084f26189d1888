"""Resumable uploads on the volume: tus 1.0.0 core with the creation, creation-with-upload,
creation-defer-length, termination, checksum, expiration and concatenation extensions.

An upload is its job: ``<job_id>.tus`` holds the bytes received so far (its size is the
offset) and ``<job_id>.tus.json`` what the creation said (length, user, metadata). Appends are
serialised by a lock on the data file. A chunk sent with ``Upload-Checksum`` is kept only if it
arrived whole and matches; a chunk without one keeps every byte that arrived, so an upload cut
at any byte continues from there. The last byte turns the data file into ``<job_id>.tar``.

A *partial* upload (concatenation) is no job: ``partials/<id>.tus`` under the volume, its id
``p`` and 32 hex digits. A *final* upload names partials in order; its job's bundle is their
bytes, copied once into ``<job_id>.tar`` while the tar's members are hashed (``tarhash``).
The bytes of a single upload are hashed as they arrive too, while one process receives them in
order; either way the worker need not read the members again.
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
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..bundles import digests
from ..common.errors import UploadError
from .spool import Spool, remove, write_all, write_json_atomically

logger = logging.getLogger(__name__)

VERSION = "1.0.0"
PARTIAL_ID = re.compile(r"^p[0-9a-f]{32}$")
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256", "sha512")
METADATA_LIMIT = 64 * 1024


# What names an upload on the volume: its job's id (a single upload), or "p" and 32 hex digits (a
# partial upload, which has no job of its own).
UploadKey = int | str
K = TypeVar("K", int, str)


class TusError(UploadError):
    """A tus request that cannot be honoured, with the HTTP status to answer."""


@dataclasses.dataclass
class Upload:
    """What the creation of an upload said.

    ``job_id`` names it on the volume (``UploadKey``): the id of its job for a single upload,
    or, for a partial upload (which has no job), an id of its own. ``job`` is the job of a single
    upload."""

    job_id: UploadKey
    length: int | None  # None until a deferred length is given
    user: str
    metadata: dict[str, str]
    created: float
    concat: str = ""  # "partial" for a partial upload
    # 128 random bits in a single upload's URL (``/uploads/<job_id>-<secret>``): job ids are
    # sequential, so the URL must not be guessable from one. Empty for uploads made before 1.1.
    secret: str = ""

    @property
    def url_id(self) -> str:
        """The last segment of the upload's URL."""
        return f"{self.job_id}-{self.secret}" if self.secret and not self.partial else str(self.job_id)

    @property
    def partial(self) -> bool:
        """A part of a concatenation, not a job of its own."""
        return self.concat == "partial"

    @property
    def job(self) -> int:
        """The job of a single upload (a partial upload has none: ``ValueError``)."""
        if self.partial:
            raise ValueError(f"partial upload {self.job_id} belongs to no job")
        return int(self.job_id)

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
    """The resumable uploads kept on the volume; one per process (``Runtime.uploads``), since it
    keeps the digests of the bundles arriving through it.

    It declares the tus extensions it implements (``extensions``) and the checksums it verifies
    (``checksum_algorithms``): the HTTP resource advertises exactly these and refuses a request
    that needs another (tusd's ``StoreComposer`` does the same)."""

    extensions: tuple[str, ...] = ("creation", "creation-with-upload", "creation-defer-length", "termination",
                                   "checksum", "expiration", "concatenation")
    checksum_algorithms: tuple[str, ...] = CHECKSUM_ALGORITHMS

    def __init__(self, spool: Spool, expiry_hours: float) -> None:
        self.spool = spool
        self.expiry = expiry_hours * 3600
        self.arriving = ArrivingDigests()

    def data_path(self, job_id: UploadKey) -> str:
        """Where the bytes of upload ``job_id`` (or of a partial upload) received so far are kept."""
        if isinstance(job_id, str):
            return os.path.join(self.partials_dir, f"{job_id}.tus")
        return self.spool.resumable_path(job_id)

    @property
    def partials_dir(self) -> str:
        """Where partial uploads are kept."""
        return os.path.join(self.spool.volume_path, "partials")

    def info_path(self, job_id: UploadKey) -> str:
        """Where the creation request of ``job_id`` is kept."""
        return self.data_path(job_id) + ".json"

    def create(self, job_id: int | None, length: int | None, user: str, metadata: dict[str, str],
               concat: str = "") -> Upload:
        """Start an upload of ``length`` bytes (None: given later) for ``user``; a partial one
        (``concat="partial"``) gets an id of its own."""
        key: UploadKey = f"p{secrets.token_hex(16)}" if concat == "partial" else int(job_id or 0)
        upload = Upload(key, None if length is None else int(length), user, metadata, time.time(), concat,
                        "" if concat == "partial" else secrets.token_hex(16))
        os.makedirs(os.path.dirname(self.data_path(key)), exist_ok=True)
        with open(self.data_path(key), "xb"):
            pass
        write_json_atomically(self.info_path(key), upload.as_dict())
        return upload

    def set_length(self, upload: Upload, length: int) -> Upload:
        """Give a deferred upload its length (once); 400 if it is less than what arrived."""
        if upload.length is not None:
            if upload.length != length:
                raise TusError(f"Upload-Length is {upload.length} already, not {length}", 400)
            return upload
        if length < self.offset(upload.job_id) or length == 0:
            raise TusError(f"Upload-Length {length} is less than the {self.offset(upload.job_id)} bytes "
                           "that arrived", 400)
        upload = dataclasses.replace(upload, length=length)
        write_json_atomically(self.info_path(upload.job_id), upload.as_dict())
        return upload

    def get(self, job_id: UploadKey) -> Upload | None:
        """The upload ``job_id``, or None when there is none (never created, finished, ended)."""
        try:
            with open(self.info_path(job_id), encoding="utf-8") as handle:
                upload = Upload(**json.load(handle))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return upload if os.path.exists(self.data_path(job_id)) else None

    def offset(self, job_id: UploadKey) -> int:
        """How many bytes of ``job_id`` have arrived."""
        return os.path.getsize(self.data_path(job_id))

    def expires_at(self, job_id: UploadKey) -> float | None:
        """When ``job_id`` expires if nothing more arrives (None: never)."""
        if self.expiry <= 0:
            return None
        try:
            return os.path.getmtime(self.data_path(job_id)) + self.expiry
        except FileNotFoundError:  # complete (now the job's bundle) or ended
            return None

    @contextlib.contextmanager
    def _locked(self, job_id: UploadKey) -> Iterator[int]:
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
               progress: Callable[[int], None] | None = None, limit: int = 0) -> int:
        """Write a PATCH body at ``offset``; return the new offset.

        409 when ``offset`` is not where the upload stands, 413 when the body would pass the
        upload's length, 460 when the chunk does not match ``checksum`` (nothing of it is kept),
        507 when the volume is full (nothing of the chunk is kept). ``progress`` is called with
        the offset now and then while the body arrives. A deferred length is bounded by ``limit``
        (0: none).
        """
        job_id = upload.job_id
        with self._locked(job_id) as descriptor:
            current = os.fstat(descriptor).st_size
            if offset != current:
                raise TusError(f"Upload-Offset is {offset}, the upload stands at {current}", 409)
            length = upload.length if upload.length is not None else limit or None
            if declared is not None and length is not None and current + declared > length:
                raise TusError(f"the chunk of {declared} bytes would pass the upload's length of "
                               f"{length} bytes (at {current})", 413)
            stream = self.arriving.hasher_for(job_id, current) if not upload.partial else None
            algorithm, expected = checksum or ("", b"")
            hasher = hashlib.new(algorithm) if checksum else None
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
                        if length is not None and current + written + count > length:
                            raise TusError(f"the body passes the upload's length of {length} bytes", 413)
                        write_all(out, buffer[:count])
                        written += count
                        if stream is not None:
                            stream.update(buffer[:count])
                        if hasher is not None:
                            hasher.update(buffer[:count])
                        if progress is not None and time.monotonic() - reported >= 1.0:
                            reported = time.monotonic()
                            progress(current + written)
                complete = declared is None or written == declared
                if hasher is not None:
                    if not complete:
                        raise TusError(f"the chunk ended after {written} of {declared} bytes", 400)
                    if hasher.digest() != expected:
                        raise TusError(f"the chunk does not match its {algorithm} checksum", 460)
            except OSError as exc:
                os.ftruncate(descriptor, current)
                self.arriving.forget(job_id)
                if exc.errno == errno.ENOSPC:
                    raise TusError(f"the volume is full after {current} bytes of the upload", 507) from None
                raise
            except BaseException:
                # A chunk with a checksum is all or nothing; without one, whatever arrived is kept.
                if hasher is not None:
                    os.ftruncate(descriptor, current)
                    self.arriving.forget(job_id)  # it saw bytes that are gone again
                else:
                    os.fsync(descriptor)
                    self.arriving.keep(job_id, stream, current + written)
                raise
            os.fsync(descriptor)
            self.arriving.keep(job_id, stream, current + written)
            if not complete:
                logger.info("upload %s: the chunk stopped after %d of %s bytes; kept", job_id, written, declared)
            return current + written

    def finish(self, upload: Upload) -> str:
        """Move a complete upload to the job's bundle path, with the digests taken as it arrived
        (when this process saw every byte in order); return the path."""
        path = self.spool.bundle_path(upload.job)
        stream = self.arriving.take(upload.job_id, upload.length)
        if stream is not None:
            digests.save(stream, path, self.data_path(upload.job_id))
        os.replace(self.data_path(upload.job_id), path)
        remove(self.info_path(upload.job_id))
        return path

    def _partial_ids(self) -> list[str]:
        """The ids of the partial uploads on the volume."""
        try:
            names = os.listdir(self.partials_dir)
        except FileNotFoundError:
            return []
        return [name[:-4] for name in names if name.endswith(".tus") and PARTIAL_ID.match(name[:-4])]

    def partials_of(self, user: str) -> list[Upload]:
        """The partial uploads of ``user`` still on the volume."""
        uploads = (self.get(key) for key in self._partial_ids())
        return [upload for upload in uploads if upload is not None and upload.user == user]

    def claim(self, parts: list[Upload], job_id: int) -> bool:
        """Take ``parts`` for the final upload of ``job_id``, all or none: False when another final
        has one of them. A claim is a file made with O_EXCL, so two finals never both win."""
        taken: list[Upload] = []
        for part in parts:
            try:
                descriptor = os.open(self._claim_path(part.job_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self.release(taken)
                return False
            os.write(descriptor, str(job_id).encode())
            os.close(descriptor)
            taken.append(part)
        return True

    def release(self, parts: list[Upload]) -> None:
        """Give back the claims on ``parts`` (the final failed before they were used)."""
        for part in parts:
            remove(self._claim_path(part.job_id))

    def claimed(self, key: UploadKey) -> bool:
        """Whether a final upload has taken the partial upload ``key``."""
        return os.path.exists(self._claim_path(key))

    def _claim_path(self, key: UploadKey) -> str:
        return self.data_path(key) + ".claim"

    def concatenate(self, parts: list[Upload], job_id: int, block_size: int) -> tuple[str, int]:
        """Copy the complete ``parts``, in order, into the bundle of ``job_id``, hashing its members
        on the way, then remove the parts; return the bundle's path and size. 507 if the volume fills."""
        path = self.spool.bundle_path(job_id)
        temp = path + ".part"
        hasher = digests.StreamHasher()
        # Two buffers in turn: one is hashed in the background while the next is copied.
        buffers = [memoryview(bytearray(block_size)) for _ in range(2)]
        hashing = digests.Overlapped(hasher)
        size = 0
        try:
            with open(temp, "wb", buffering=0) as out:
                for part in parts:
                    with open(self.data_path(part.job_id), "rb", buffering=0) as source:
                        while count := source.readinto(buffers[0]):
                            write_all(out, buffers[0][:count])
                            hashing.update(buffers[0][:count])
                            buffers.reverse()
                            size += count
                os.fsync(out.fileno())
            hashing.close()
            digests.save(hasher, path, temp)
            os.replace(temp, path)
        except OSError as exc:
            hashing.close()
            remove(temp)
            digests.discard(path)
            if exc.errno == errno.ENOSPC:
                raise TusError(f"the volume is full after {size} bytes of the concatenation", 507) from None
            raise
        for part in parts:
            self.discard(part.job_id)
        return path, size

    def discard(self, job_id: UploadKey) -> None:
        """Remove every file of the upload ``job_id``."""
        remove(self.data_path(job_id))
        remove(self.info_path(job_id))
        remove(self._claim_path(job_id))
        self.arriving.forget(job_id)

    def unfinished(self) -> list[int]:
        """The job ids of every upload still on the volume."""
        try:
            names = os.listdir(self.spool.volume_path)
        except FileNotFoundError:
            return []
        return sorted(int(name[:-4]) for name in names if name.endswith(".tus") and name[:-4].isdigit())

    def expired_partials(self, now: float | None = None) -> list[str]:
        """The partial uploads that received nothing for longer than the expiry time."""
        return self._idle(self._partial_ids(), now)

    def expired(self, now: float | None = None) -> list[int]:
        """The uploads that received nothing for longer than the expiry time."""
        return self._idle(self.unfinished(), now)

    def _idle(self, keys: list[K], now: float | None) -> list[K]:
        """Those of ``keys`` whose bytes last changed longer than the expiry time ago."""
        if self.expiry <= 0:
            return []
        now = time.time() if now is None else now
        found = []
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getmtime(self.data_path(key)) + self.expiry < now:
                    found.append(key)
        return found


class ArrivingDigests:
    """The tar members of each single upload this process is receiving in order, hashed as the
    bytes arrive (in the request's thread: one buffer is reused for every block): the offset
    reached and the hasher. An upload whose bytes this process did not all see (another uWSGI
    process, a restart, a chunk rolled back) has none, and the worker hashes its members itself."""

    def __init__(self) -> None:
        self._streams: dict[UploadKey, tuple[int, digests.StreamHasher] | None] = {}
        self._lock = threading.Lock()

    def hasher_for(self, job_id: UploadKey, offset: int) -> digests.StreamHasher | None:
        """The hasher to go on with at ``offset`` (a new one at 0), or None."""
        with self._lock:
            if offset == 0:
                return digests.StreamHasher()
            entry = self._streams.get(job_id)
            return entry[1] if entry is not None and entry[0] == offset else None

    def keep(self, job_id: UploadKey, stream: digests.StreamHasher | None, offset: int) -> None:
        """Remember the hasher of ``job_id`` as having seen every byte up to ``offset``."""
        with self._lock:
            self._streams[job_id] = (offset, stream) if stream is not None else None

    def forget(self, job_id: UploadKey) -> None:
        """Drop the hasher of ``job_id``: it saw bytes that are gone, or the upload ended."""
        with self._lock:
            self._streams.pop(job_id, None)

    def take(self, job_id: UploadKey, length: int | None) -> digests.StreamHasher | None:
        """The hasher of a complete upload of ``length`` bytes, if it saw them all; forgotten."""
        with self._lock:
            entry = self._streams.pop(job_id, None)
        return entry[1] if entry is not None and entry[0] == length else None
