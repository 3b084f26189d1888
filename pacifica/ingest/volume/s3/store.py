"""The S3 door's objects and multipart uploads, kept on the volume.

Each user has a namespace of their own: ``s3/objects/<user digest>/<key digest>.json`` is an
object's record (key, size, ETag, checksums, and what became of it), and
``<key digest>.<random>.data`` its bytes while it waits to be part of a job (a new name for each
write: the record names the bytes written with it). A multipart upload is ``s3/uploads/<upload id>/``: its creation
(``upload.json``) and each part as ``<n>.part`` with ``<n>.json``. Every byte is hashed once,
as it arrives; nothing is kept of a body whose checksum or signature fails.

Keys and users are never used as paths, only their SHA-256: any key is safe on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..body import Body
from ..spool import remove, write_all, write_json_atomically
from .checksums import ALGORITHMS, Hashers, composite, decode, encode

logger = logging.getLogger(__name__)

UPLOAD_ID = re.compile(r"^[0-9a-f]{48}$")
MAX_KEY_BYTES = 1024
MAX_PARTS = 10_000


class S3Failure(Exception):
    """A request the store refuses, with the S3 error code and HTTP status to answer."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclasses.dataclass
class ObjectRecord:
    """An object: its key and owner, size, ETag (without quotes), checksums and when it was
    written; once it is part of a job, that job (and, for a file of a prefix, its path in the
    job's bundle)."""

    key: str
    user: str
    size: int
    etag: str
    checksums: dict[str, str]
    checksum_type: str
    modified: float
    content_type: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    sha1: str = ""
    job_id: int | None = None
    member: str | None = None
    parts: int = 0
    # The file of its bytes in the user's folder: a name of its own for each write, so that the
    # record written last names the bytes written with it, whichever of two writers ends first.
    data_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PartRecord:
    """One part of a multipart upload."""

    number: int
    size: int
    etag: str
    checksum: str  # base64 of the upload's algorithm over the part ("" without one)
    modified: float


@dataclasses.dataclass
class UploadRecord:
    """What the creation of a multipart upload said."""

    upload_id: str
    user: str
    key: str
    algorithm: str
    checksum_type: str
    created: float
    content_type: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Expected:
    """The digests a body must have: ``Content-MD5`` and ``x-amz-checksum-*`` from its headers,
    and a callable giving those of its trailer once it ended."""

    headers: dict[str, str]
    content_md5: str | None = None
    trailer: Callable[[], dict[str, str]] = dict

    def algorithms(self) -> list[str]:
        """The checksum algorithms named (some only in the trailer, whose name the headers give)."""
        return [name for name in self.headers if name in ALGORITHMS]


def read_json(path: str) -> Any:
    """The JSON document at ``path``; None when it is missing or not JSON (half written)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def check_key(key: str) -> None:
    """Refuse a key S3 would refuse: empty, or longer than 1024 bytes of UTF-8."""
    if not key:
        raise S3Failure("InvalidArgument", "an object key is required")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise S3Failure("KeyTooLongError", f"an object key may have at most {MAX_KEY_BYTES} bytes")


def verify(hashers: Hashers, expected: Expected) -> None:
    """Refuse a body whose digests are not those its headers and trailer named (``BadDigest``)."""
    if expected.content_md5 is not None:
        given = decode(expected.content_md5)
        if given is None or len(given) != 16:
            raise S3Failure("InvalidDigest", "the Content-MD5 you specified is not valid")
        if given != hashers.digest("md5"):
            raise S3Failure("BadDigest", "the Content-MD5 you specified did not match what we received")
    named = {**expected.headers, **{name.removeprefix("x-amz-checksum-"): value
                                    for name, value in expected.trailer().items()
                                    if name.startswith("x-amz-checksum-")}}
    for algorithm, value in named.items():
        if algorithm not in ALGORITHMS or not value:
            continue
        if decode(value) != hashers.digest(algorithm):
            raise S3Failure("BadDigest", f"the {algorithm.upper()} you specified did not match the calculated checksum")


def write_new(path: str, body: Body, hashers: Hashers, block_size: int, limit: int = 0) -> int:
    """Write ``body`` to the new file ``path`` (durably), hashing every byte; return the byte count."""
    buffer = memoryview(bytearray(block_size))
    size = 0
    with open(path, "xb", buffering=0) as handle:
        while count := body.readinto(buffer):
            size += count
            if limit and size > limit:
                raise S3Failure("EntityTooLarge", f"the body is larger than the {limit} byte limit", 400)
            write_all(handle, buffer[:count])
            hashers.update(buffer[:count])
        os.fsync(handle.fileno())
    return size


@contextlib.contextmanager
def _kept_only_whole(temp: str, upload: bool = False) -> Iterator[None]:
    """Write to ``temp`` inside: on any failure it is removed (a full volume is
    ``InsufficientStorage``; a part's upload gone meanwhile, ``NoSuchUpload``)."""
    try:
        yield
    except OSError as exc:
        remove(temp)
        if exc.errno == errno.ENOSPC:
            raise S3Failure("InsufficientStorage", "the volume is full", 507) from None
        if upload and exc.errno == errno.ENOENT:
            raise S3Failure("NoSuchUpload", "The specified upload does not exist.", 404) from None
        raise
    except BaseException:
        remove(temp)
        raise


class ObjectStore:
    """The objects and multipart uploads of every user, under ``<volume>/s3``."""

    def __init__(self, volume_path: str, block_size: int) -> None:
        self.root = os.path.join(volume_path, "s3")
        self.block_size = block_size

    # ---- objects ---------------------------------------------------------------------------

    def user_dir(self, user: str) -> str:
        """Where ``user``'s objects are kept."""
        return os.path.join(self.root, "objects", _digest(user)[:32])

    def path(self, user: str, key: str, suffix: str) -> str:
        """The file ``suffix`` (``.json``, or ``.<random>.tmp`` while it arrives) of ``user``'s object ``key``."""
        return os.path.join(self.user_dir(user), _digest(key) + suffix)

    def get(self, user: str, key: str) -> ObjectRecord | None:
        """``user``'s object ``key``, or None."""
        try:
            with open(self.path(user, key, ".json"), encoding="utf-8") as handle:
                return ObjectRecord(**json.load(handle))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def save(self, record: ObjectRecord) -> None:
        """Write ``record`` (durably)."""
        write_json_atomically(self.path(record.user, record.key, ".json"), record.as_dict())

    def data(self, record: ObjectRecord) -> str | None:
        """The path of the object's bytes while the volume holds them, else None."""
        if not record.data_name:
            return None
        path = os.path.join(self.user_dir(record.user), record.data_name)
        return path if os.path.exists(path) else None

    def _commit(self, temp: str, record: ObjectRecord) -> None:
        """Make ``temp`` the bytes of ``record`` and save it; the bytes it replaces go."""
        record.data_name = f"{_digest(record.key)}.{secrets.token_hex(8)}.data"
        os.replace(temp, os.path.join(self.user_dir(record.user), record.data_name))
        previous = self.get(record.user, record.key)
        self.save(record)
        replaced = self.data(previous) if previous is not None else None
        if replaced is not None:
            remove(replaced)

    def put(self, user: str, key: str, body: Body, expected: Expected, *, if_none_match: bool = False,
            content_type: str = "", metadata: dict[str, str] | None = None, limit: int = 0) -> ObjectRecord:
        """Store ``body`` as ``user``'s object ``key``, hashed as it arrives and kept only if its
        digests are those ``expected`` names; ``if_none_match``: refuse (412) an existing key."""
        check_key(key)
        if if_none_match and self.get(user, key) is not None:
            raise S3Failure("PreconditionFailed", "an object with this key exists already (If-None-Match: *)", 412)
        os.makedirs(self.user_dir(user), exist_ok=True)
        temp = self.path(user, key, f".{secrets.token_hex(6)}.tmp")
        hashers = Hashers([*expected.algorithms(), "sha1"])
        with _kept_only_whole(temp):
            size = write_new(temp, body, hashers, self.block_size, limit)
            verify(hashers, expected)
            record = ObjectRecord(key, user, size, hashers.digest("md5").hex(), _named(hashers, expected),
                                  "FULL_OBJECT" if _named(hashers, expected) else "", time.time(), content_type,
                                  metadata or {}, hashers.digest("sha1").hex())
            if if_none_match and self.get(user, key) is not None:
                raise S3Failure("PreconditionFailed", "an object with this key was written meanwhile "
                                                      "(If-None-Match: *)", 412)
            self._commit(temp, record)
        return record

    def delete(self, user: str, key: str) -> bool:
        """Remove ``user``'s object ``key`` (its bytes, if still here, and its record)."""
        record = self.get(user, key)
        remove(self.path(user, key, ".json"))
        data = self.data(record) if record is not None else None
        if data is not None:
            remove(data)
        return record is not None

    def records(self, user: str) -> Iterator[ObjectRecord]:
        """Every object of ``user``, in no order."""
        directory = self.user_dir(user)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".json"):
                found = read_json(os.path.join(directory, name))
                if isinstance(found, dict):
                    with contextlib.suppress(TypeError):
                        yield ObjectRecord(**found)

    def listing(self, user: str, prefix: str = "", after: str = "") -> list[ObjectRecord]:
        """``user``'s objects under ``prefix`` whose keys sort after ``after``, sorted by key
        (as UTF-8 bytes, as S3 sorts them)."""
        found = [record for record in self.records(user) if record.key.startswith(prefix) and record.key > after]
        return sorted(found, key=lambda record: record.key.encode("utf-8", "surrogateescape"))

    # ---- multipart uploads ------------------------------------------------------------------

    def upload_dir(self, upload_id: str) -> str:
        """Where the multipart upload ``upload_id`` is kept."""
        return os.path.join(self.root, "uploads", upload_id)

    def create_upload(self, user: str, key: str, algorithm: str, checksum_type: str, content_type: str = "",
                      metadata: dict[str, str] | None = None) -> UploadRecord:
        """Start a multipart upload of ``key`` for ``user``."""
        check_key(key)
        upload = UploadRecord(secrets.token_hex(24), user, key, algorithm, checksum_type, time.time(), content_type,
                              metadata or {})
        os.makedirs(self.upload_dir(upload.upload_id))
        write_json_atomically(os.path.join(self.upload_dir(upload.upload_id), "upload.json"),
                              dataclasses.asdict(upload))
        return upload

    def upload(self, user: str, upload_id: str, key: str | None = None) -> UploadRecord:
        """``user``'s multipart upload ``upload_id`` (of ``key``); ``NoSuchUpload`` for another
        user's, as for none at all."""
        record = None
        if UPLOAD_ID.match(upload_id or ""):
            found = read_json(os.path.join(self.upload_dir(upload_id), "upload.json"))
            if isinstance(found, dict):
                with contextlib.suppress(TypeError):
                    record = UploadRecord(**found)
        if record is None or record.user != user or (key is not None and record.key != key):
            raise S3Failure("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, "
                            "or the upload may have been aborted or completed.", 404)
        return record

    def put_part(self, upload: UploadRecord, number: int, body: Body, expected: Expected,
                 limit: int = 0) -> PartRecord:
        """Store part ``number`` of ``upload``; kept only if its digests hold (a part sent again
        replaces the earlier one)."""
        if not 1 <= number <= MAX_PARTS:
            raise S3Failure("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}")
        algorithms = expected.algorithms()
        if upload.algorithm and algorithms and upload.algorithm not in algorithms:
            raise S3Failure("InvalidRequest", f"the upload was created with {upload.algorithm.upper()}; a part "
                                              f"cannot be sent with {', '.join(algorithms).upper()}")
        directory = self.upload_dir(upload.upload_id)
        temp = os.path.join(directory, f"{number}.part.{secrets.token_hex(6)}.tmp")
        hashers = Hashers([*algorithms, *([upload.algorithm] if upload.algorithm else [])])
        with _kept_only_whole(temp, upload=True):  # an upload aborted meanwhile: NoSuchUpload
            size = write_new(temp, body, hashers, self.block_size, limit)
            verify(hashers, expected)
            part = PartRecord(number, size, hashers.digest("md5").hex(),
                              encode(hashers.digest(upload.algorithm)) if upload.algorithm else "", time.time())
            os.replace(temp, os.path.join(directory, f"{number}.part"))
            write_json_atomically(os.path.join(directory, f"{number}.json"), dataclasses.asdict(part))
        return part

    def parts(self, upload: UploadRecord) -> list[PartRecord]:
        """The parts of ``upload`` received so far, by number."""
        directory = self.upload_dir(upload.upload_id)
        found = []
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(directory):
                if name.endswith(".json") and name[:-5].isdigit():
                    item = read_json(os.path.join(directory, name))
                    if isinstance(item, dict):
                        with contextlib.suppress(TypeError):
                            found.append(PartRecord(**item))
        return sorted(found, key=lambda part: part.number)

    def part_path(self, upload: UploadRecord, number: int) -> str:
        """Where part ``number`` of ``upload`` is kept."""
        return os.path.join(self.upload_dir(upload.upload_id), f"{number}.part")

    def uploads(self, user: str) -> list[UploadRecord]:
        """``user``'s multipart uploads in progress, by key and time."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for upload_id in os.listdir(os.path.join(self.root, "uploads")):
                with contextlib.suppress(S3Failure):
                    found.append(self.upload(user, upload_id))
        return sorted(found, key=lambda upload: (upload.key, upload.created))

    def abort(self, upload: UploadRecord) -> None:
        """End ``upload`` and free its space at once."""
        shutil.rmtree(self.upload_dir(upload.upload_id), ignore_errors=True)

    def chosen_parts(self, upload: UploadRecord, named: list[tuple[int, str, dict[str, str]]]) -> list[PartRecord]:
        """The parts a completion names (number, ETag, checksums), checked: ascending, each
        received with that ETag and checksum (``InvalidPartOrder``, ``InvalidPart``)."""
        if not named:
            raise S3Failure("MalformedXML", "the completion names no part")
        received = {part.number: part for part in self.parts(upload)}
        chosen = []
        previous = 0
        for number, etag, checksums in named:
            if number <= previous:
                raise S3Failure("InvalidPartOrder", "The list of parts was not in ascending order.")
            previous = number
            part = received.get(number)
            if part is None or etag.strip().strip('"').lower() != part.etag:
                raise S3Failure("InvalidPart", f"part {number} was not uploaded, or its ETag does not match")
            given = checksums.get(upload.algorithm) if upload.algorithm else None
            if given and given != part.checksum:
                raise S3Failure("InvalidPart", f"part {number}'s {upload.algorithm.upper()} does not match the part")
            chosen.append(part)
        return chosen

    def complete(self, upload: UploadRecord, parts: list[PartRecord], full_object: str | None = None,
                 if_none_match: bool = False) -> ObjectRecord:
        """Make ``parts`` the object ``upload`` is of: their bytes copied once, in order, into the
        object's file while its SHA-1 (and a full-object checksum) is taken; the upload is gone
        after. ``full_object``: the whole object's checksum the client named (``BadDigest`` if
        it differs)."""
        if if_none_match and self.get(upload.user, upload.key) is not None:
            raise S3Failure("PreconditionFailed", "an object with this key exists already (If-None-Match: *)", 412)
        os.makedirs(self.user_dir(upload.user), exist_ok=True)
        temp = self.path(upload.user, upload.key, f".{secrets.token_hex(6)}.tmp")
        whole = whole_algorithm(upload)
        hashers = Hashers(["sha1", *([whole] if whole else [])])
        reader = PartsReader([self.part_path(upload, part.number) for part in parts])
        with _kept_only_whole(temp):
            try:
                size = write_new(temp, reader, hashers, self.block_size)
            finally:
                reader.close()
            if whole and full_object and decode(full_object) != hashers.digest(whole):
                raise S3Failure("BadDigest", f"the {whole.upper()} you specified for the whole object did not "
                                             "match the calculated checksum")
            record = ObjectRecord(upload.key, upload.user, size, multipart_etag(parts),
                                  multipart_checksums(upload, parts, hashers),
                                  upload.checksum_type if upload.algorithm else "", time.time(), upload.content_type,
                                  upload.metadata, hashers.digest("sha1").hex(), parts=len(parts))
            self._commit(temp, record)
        self.abort(upload)
        return record

    def expire(self, max_age: float, now: float | None = None) -> tuple[int, int]:
        """Remove multipart uploads and waiting objects untouched for ``max_age`` seconds;
        return how many of each."""
        now = time.time() if now is None else now
        uploads = objects = 0
        with contextlib.suppress(FileNotFoundError):
            for upload_id in os.listdir(os.path.join(self.root, "uploads")):
                directory = self.upload_dir(upload_id)
                if _newest(directory) + max_age < now:
                    shutil.rmtree(directory, ignore_errors=True)
                    uploads += 1
        with contextlib.suppress(FileNotFoundError):
            for user_dir in os.listdir(os.path.join(self.root, "objects")):
                directory = os.path.join(self.root, "objects", user_dir)
                for name in os.listdir(directory):
                    if not name.endswith((".data", ".tmp")):
                        continue
                    data = os.path.join(directory, name)
                    with contextlib.suppress(FileNotFoundError):
                        if os.path.getmtime(data) + max_age >= now:
                            continue
                        remove(data)
                        # The record goes with its bytes (not a record whose bytes are newer).
                        record_path = os.path.join(directory, name.split(".", 1)[0] + ".json")
                        record = read_json(record_path)
                        if isinstance(record, dict) and record.get("data_name") == name:
                            remove(record_path)
                            objects += 1
        return uploads, objects


def _named(hashers: Hashers, expected: Expected) -> dict[str, str]:
    """The checksums a body was sent with, as computed (S3 keeps and returns those)."""
    names = set(expected.algorithms()) | {name.removeprefix("x-amz-checksum-")
                                          for name in expected.trailer() if name.startswith("x-amz-checksum-")}
    return {name: encode(hashers.digest(name)) for name in sorted(names) if name in ALGORITHMS}


def _newest(directory: str) -> float:
    """The latest modification time of ``directory`` and what it holds."""
    newest = 0.0
    with contextlib.suppress(FileNotFoundError):
        newest = os.path.getmtime(directory)
        for name in os.listdir(directory):
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.path.getmtime(os.path.join(directory, name)))
    return newest


def multipart_etag(parts: list[PartRecord]) -> str:
    """The ETag S3 gives a multipart object: the MD5 of its parts' MD5s, then ``-<parts>``."""
    return f"{hashlib.md5(b''.join(bytes.fromhex(part.etag) for part in parts)).hexdigest()}-{len(parts)}"


def whole_algorithm(upload: UploadRecord) -> str:
    """The algorithm a multipart object's whole bytes are hashed with ('' for a composite checksum)."""
    return upload.algorithm if upload.checksum_type == "FULL_OBJECT" else ""


def multipart_checksums(upload: UploadRecord, parts: list[PartRecord], hashers: Hashers) -> dict[str, str]:
    """The checksum of a multipart object: full-object (from ``hashers``, which saw every byte)
    or composite (from its parts'), as its upload was created; none without an algorithm."""
    whole = whole_algorithm(upload)
    if whole:
        return {whole: encode(hashers.digest(whole))}
    if upload.algorithm:
        return {upload.algorithm: composite(upload.algorithm, (decode(part.checksum) or b"" for part in parts))}
    return {}


class PartsReader:
    """The chosen parts of a multipart upload, read one after another as one body (``Body``)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = list(paths)
        self.current: Any = None

    def readinto(self, buffer: memoryview) -> int:
        """The next bytes of the concatenation; 0 at its end."""
        while True:
            if self.current is None:
                if not self.paths:
                    return 0
                self.current = open(self.paths.pop(0), "rb", buffering=0)  # noqa: SIM115 - closed at its end
            count = self.current.readinto(buffer)
            if count:
                return count
            self.current.close()
            self.current = None

    def close(self) -> None:
        """Close the part being read."""
        if self.current is not None:
            self.current.close()
            self.current = None


class HashingBody:
    """A body whose bytes also go to ``hashers`` as they are read."""

    def __init__(self, body: Body, hashers: Hashers) -> None:
        self.body, self.hashers = body, hashers

    def readinto(self, buffer: memoryview) -> int:
        """The next bytes of the body, hashed."""
        count = self.body.readinto(buffer)
        if count:
            self.hashers.update(buffer[:count])
        return count
