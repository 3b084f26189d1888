"""The S3 door: a subset of the S3 REST API on a port of its own, into the same pipeline.

One bucket, ``ingest``, path-style (``http://host:port/ingest/<key>``). Every request is signed
with SigV4 by an access key of ``pacifica-ingest-cmd token create --s3``; its user is the
request's identity, for owners and quotas, and sees only their own objects and uploads.

- An object whose key ends in ``.tar`` is a bundle: when it is whole (``PutObject`` or
  ``CompleteMultipartUpload``) it becomes a job, exactly as a ``POST /upload``; the job's id is
  in the ``x-pacifica-job-id`` header and in the object's metadata (``x-amz-meta-pacifica-job-id``).
- Any other object waits on the volume. A ``<prefix>metadata.txt`` object makes the objects of
  ``<prefix>`` a job (``volume.s3.prefix``), once every file it lists has arrived.

Errors are S3's XML documents with S3's codes, never a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import cherrypy
import peewee

from ....core.auth import sigv4
from ....core.auth.sealing import Sealer, SealError
from ....core.database import release as release_connection
from ....core.redact import public_text
from ...bundles.document import FileEntry, file_entries, parse_document, transaction_values
from ...common.errors import MetadataError, PeerError, UploadError
from ...common.metrics import RECEIVED_BUNDLES, RECEIVED_BYTES
from ...db import archived, models, s3keys
from ...jobs import admission, record
from ...jobs.runtime import Runtime
from ...jobs.stages import make_context
from ...volume.body import request_body
from ...volume.s3.checksums import ALGORITHMS, MULTIPART_TYPES, Hashers, decode, encode
from ...volume.s3.prefix import METADATA_NAME, Prefixes, Waiting, build_bundle, metadata_prefix, missing
from ...volume.s3.store import (
    Expected,
    HashingBody,
    ObjectRecord,
    ObjectStore,
    PartsReader,
    S3Failure,
    multipart_checksums,
    multipart_etag,
    verify,
    whole_algorithm,
)
from ..kit import enqueue, fail, new_job
from . import protocol
from .protocol import S3Error, element
from .wire import PayloadReader, WireError

logger = logging.getLogger(__name__)

BUCKET = "ingest"
JOB_HEADER = "x-pacifica-job-id"
JOB_META = "pacifica-job-id"
MAX_LIST = 1000
_SEALERS: dict[str, Sealer] = {}


def is_bundle_key(key: str) -> bool:
    """Whether the object ``key`` is a bundle (a tar), to become a job when whole."""
    return key.lower().endswith(".tar")


class _Call:
    """What a request is: its raw target, bucket, key, query, the runtime and (once checked)
    the access key it was signed with."""

    def __init__(self, rt: Runtime) -> None:
        request = cherrypy.request
        # The target exactly as the client sent it (the client signed it so): cheroot keeps it in
        # REQUEST_URI, whereas CherryPy's request line is rebuilt from the decoded path.
        target = request.wsgi_environ.get("REQUEST_URI") or "/"
        if "://" in target:
            split = urllib.parse.urlsplit(target)
            target = split.path + (f"?{split.query}" if split.query else "")
        self.path: str
        self.query: str
        self.path, _, self.query = target.partition("?")
        decoded = urllib.parse.unquote(self.path)
        self.bucket, _, self.key = decoded.lstrip("/").partition("/")
        self.params = dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))
        self.rt = rt
        self.method = request.method
        self.key_record: s3keys.S3Key | None = None
        self.claim: sigv4.Claim | None = None
        self.signing_key: bytes | None = None

    @property
    def user(self) -> str:
        assert self.key_record is not None
        return self.key_record.user

    @property
    def resource(self) -> str:
        return "/" + self.bucket + ("/" + self.key if self.key else "")

    def header(self, name: str) -> str | None:
        return cherrypy.request.headers.get(name)


def _sealer(rt: Runtime) -> Sealer:
    path = rt.settings.s3_key_file
    if path not in _SEALERS:
        _SEALERS[path] = Sealer(path)
    return _SEALERS[path]


def store_of(rt: Runtime) -> ObjectStore:
    """The objects of the volume of ``rt``."""
    return ObjectStore(rt.spool.volume_path, rt.spool.block_size)


def _authenticate(call: _Call) -> None:
    """Check the request's SigV4 signature against its access key; the key's user acts."""
    request = sigv4.Request(call.method, call.path, call.query,
                            [(str(name), str(value)) for name, value in cherrypy.request.header_list])
    try:
        claim = sigv4.read_claim(request)
        if claim is None:
            raise S3Error("AccessDenied", "Anonymous requests are not accepted: sign them with an access key "
                                          "(pacifica-ingest-cmd token create --user U --s3)")
        tokens = call.rt.auth.tokens if call.rt.auth is not None else None
        if tokens is None:
            raise S3Error("AccessDenied", "this service has no access keys")
        try:
            found = s3keys.find(tokens, _sealer(call.rt), claim.access_key)
        except SealError as exc:
            logger.error("S3 access key %s: %s", claim.access_key, exc)
            raise S3Error("InvalidAccessKeyId", "The access key cannot be used: ask the operator") from None
        if found is None:
            raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        sigv4.check_time(claim, call.params)
        call.signing_key = sigv4.verify(request, claim, found.secret)
    except sigv4.SignatureError as exc:
        raise S3Error(exc.code, str(exc)) from None
    if "upload" not in found.scopes:
        raise S3Error("AccessDenied", "the access key's token has no upload scope")
    call.key_record, call.claim = found, claim


# ---- bodies and checksums --------------------------------------------------------------------


def _count(name: str, value: str) -> int:
    """``value`` (of the header or parameter ``name``) as a non-negative integer; ``InvalidArgument``."""
    try:
        number = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} must be an integer") from None
    if number < 0:
        raise S3Error("InvalidArgument", f"{name} must not be negative")
    return number


def _declared_length(call: _Call) -> int | None:
    for name in ("x-amz-decoded-content-length", "Content-Length"):
        value = call.header(name)
        if value is not None:
            return _count(name, value)
    return None


def _reader(call: _Call) -> PayloadReader:
    encoding = (call.header("Content-Encoding") or "").lower()
    decoded = call.header("x-amz-decoded-content-length")
    return PayloadReader(request_body(cherrypy.request.rfile), call.claim, call.signing_key,
                         "aws-chunked" in encoding, int(decoded) if decoded and decoded.isdigit() else None)


def _expected(call: _Call, reader: PayloadReader) -> Expected:
    named: dict[str, str] = {}
    for algorithm in ALGORITHMS:
        value = call.header(f"x-amz-checksum-{algorithm}")
        if value is not None:
            named[algorithm] = value
    for name in (call.header("x-amz-trailer") or "").split(","):
        name = name.strip().lower()
        if name.startswith("x-amz-checksum-") and name[len("x-amz-checksum-"):] in ALGORITHMS:
            named.setdefault(name[len("x-amz-checksum-"):], "")
    sdk = (call.header("x-amz-sdk-checksum-algorithm") or "").lower()
    if sdk in ALGORITHMS:
        named.setdefault(sdk, "")
    return Expected(named, call.header("Content-MD5"), lambda: reader.trailers)


def _room(call: _Call, length: int | None) -> None:
    """Refuse a body the volume has no room for, or above the size limit."""
    if length is None:
        return
    try:
        admission.bundle(length, call.rt.settings.max_upload_size, call.rt.spool, "object")
    except admission.Refused as exc:
        raise S3Error("InsufficientStorage" if exc.status == 507 else "EntityTooLarge", str(exc),
                      507 if exc.status == 507 else 400) from None


def _metadata(call: _Call) -> dict[str, str]:
    return {str(name)[len("x-amz-meta-"):].lower(): str(value) for name, value in cherrypy.request.header_list
            if str(name).lower().startswith("x-amz-meta-")}


def _new_job(call: _Call, size: int | None, project: str | None, instrument: str | None) -> int:
    """A job of the caller's, admitted under their quotas; S3 errors for a refusal."""
    try:
        return new_job(None, call.user, size=size, project=project, instrument=instrument)
    except cherrypy.HTTPError as exc:
        message = exc._message or "the job could not be created"
        if exc.status == 429:
            raise S3Error("SlowDown", message, 503,
                          {"Retry-After": cherrypy.response.headers.get("Retry-After", "1")}) from None
        if exc.status == 413:
            raise S3Error("QuotaExceeded", message, 403) from None
        if exc.status == 507:
            raise S3Error("InsufficientStorage", message, 507) from None
        raise S3Error("ServiceUnavailable", message, 503) from None


def _checksum_headers(record: ObjectRecord) -> dict[str, str]:
    headers = {f"x-amz-checksum-{name}": value for name, value in record.checksums.items()}
    if record.checksums and record.checksum_type:
        headers["x-amz-checksum-type"] = record.checksum_type
    return headers


# ---- objects -----------------------------------------------------------------------------


def _receive_bundle(call: _Call, key: str, body: Any, length: int | None, hashers: Hashers,
                    project: str | None, instrument: str | None) -> tuple[int, int]:
    """A bundle's bytes into a new job's bundle on the volume, hashed as for ``POST /upload``;
    return the job and the size. The job FAILS (and nothing stays) if the body does not arrive
    whole and as declared."""
    rt = call.rt
    job_id = _new_job(call, length, project, instrument)
    try:
        size = rt.spool.receive(job_id, body, length, rt.settings.max_upload_size, stage_members=rt.stages_members())
        return job_id, size
    except BaseException as exc:
        rt.spool.discard_partial(job_id)
        rt.spool.discard(job_id)
        fail(job_id, f"the object {key[:200]} did not arrive whole: {exc}"[:500])
        if isinstance(exc, UploadError):
            raise S3Error("InsufficientStorage" if exc.status == 507 else "IncompleteBody", str(exc)) from None
        raise


def _start_job(call: _Call, job_id: int, size: int) -> None:
    path = call.rt.spool.bundle_path(job_id)
    record.upload_whole(job_id, size)
    enqueue(make_context(job_id, path, call.user))
    RECEIVED_BUNDLES.labels("s3").inc()
    cherrypy.response.headers[JOB_HEADER] = str(job_id)
    logger.info("job %s: S3 object of %d bytes from %s", job_id, size, call.user)


def put_object(call: _Call) -> bytes:
    """``PutObject``: store the object (a bundle becomes a job at once)."""
    if call.header("x-amz-copy-source"):
        raise S3Error("NotImplemented", "CopyObject is not supported by this door")
    if_none_match = _if_none_match(call)
    length = _declared_length(call)
    _room(call, length)
    reader = _reader(call)
    expected = _expected(call, reader)
    store = store_of(call.rt)
    metadata = _metadata(call)
    key = call.key
    if is_bundle_key(key):
        if if_none_match and store.get(call.user, key) is not None:
            raise S3Error("PreconditionFailed", "an object with this key exists already (If-None-Match: *)")
        hashers = Hashers(expected.algorithms())
        job_id, size = _receive_bundle(call, key, HashingBody(reader, hashers), length, hashers,
                                       metadata.get("project"), metadata.get("instrument"))
        try:
            verify(hashers, expected)
        except S3Failure:
            call.rt.spool.discard(job_id)
            fail(job_id, f"the object {key[:200]} did not match its checksum")
            raise
        checksums = {name: encode(hashers.digest(name)) for name in expected.algorithms()}
        stored = ObjectRecord(key, call.user, size, hashers.digest("md5").hex(), checksums,
                              "FULL_OBJECT" if checksums else "", time.time(), call.header("Content-Type") or "",
                              {**metadata, JOB_META: str(job_id)}, job_id=job_id)
        store.save(stored)
        RECEIVED_BYTES.labels("s3").inc(size)
        _start_job(call, job_id, size)
    else:
        stored = store.put(call.user, key, reader, expected, if_none_match=if_none_match,
                           content_type=call.header("Content-Type") or "", metadata=metadata,
                           limit=call.rt.settings.max_upload_size)
        RECEIVED_BYTES.labels("s3").inc(stored.size)
        _arrived(call, stored)
    headers = cherrypy.response.headers
    headers["ETag"] = f'"{stored.etag}"'
    headers.update(_checksum_headers(stored))
    return b""


def _if_none_match(call: _Call) -> bool:
    value = call.header("If-None-Match")
    if value is None:
        return False
    if value.strip() != "*":
        raise S3Error("NotImplemented", "only If-None-Match: * is supported on writes")
    return True


def _arrived(call: _Call, stored: ObjectRecord) -> None:
    """An object is whole: a ``metadata.txt`` makes its prefix a job; another may complete one."""
    prefixes = Prefixes(store_of(call.rt))
    prefix = metadata_prefix(stored.key)
    if prefix is not None:
        job_id = _metadata_arrived(call, prefixes, prefix, stored)
        cherrypy.response.headers[JOB_HEADER] = str(job_id)
        return
    for candidate in prefixes.candidates(stored.key):
        if prefixes.get(call.user, candidate) is not None:
            _complete_prefix(call, prefixes, candidate)


def _read_document(store: ObjectStore, stored: ObjectRecord, limit: int) -> tuple[bytes, list, list[FileEntry]]:
    """A prefix's ``metadata.txt``: its bytes, the document and its files; ``InvalidArgument``
    naming why it cannot be ingested."""
    path = store.data(stored)
    if path is None:
        raise S3Error("NoSuchKey", f"{stored.key} is gone")
    if stored.size > limit:
        raise S3Error("InvalidArgument", f"{METADATA_NAME} is larger than the {limit} byte metadata limit")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        document = parse_document(raw)
        entries = file_entries(document)
    except MetadataError as exc:
        raise S3Error("InvalidArgument", f"{stored.key}: {exc}"[:1000]) from None
    if not entries:
        raise S3Error("InvalidArgument", f"{stored.key} lists no Files: nothing to ingest")
    return raw, document, entries


def _metadata_arrived(call: _Call, prefixes: Prefixes, prefix: str, stored: ObjectRecord) -> int:
    """The prefix's ``metadata.txt``: checked, then the job (waiting for the files it lists)."""
    store = prefixes.store
    try:
        _raw, document, entries = _read_document(store, stored, call.rt.settings.metadata_limit)
    except S3Error:
        store.delete(call.user, stored.key)  # a metadata.txt that cannot be ingested is not kept
        raise
    with prefixes.locked(call.user, prefix):
        waiting = prefixes.get(call.user, prefix)
        if waiting is None:
            values = transaction_values(document)
            job_id = _new_job(call, sum(entry.size or 0 for entry in entries), values.get("project"),
                              values.get("instrument"))
            waiting = Waiting(job_id, call.user, prefix, time.time())
            prefixes.wait(waiting)
            logger.info("job %s: %s%s arrived; waiting for the %d files it lists", job_id, prefix, METADATA_NAME,
                        len(entries))
        stored.metadata[JOB_META] = str(waiting.job_id)
        store.save(stored)
    _complete_prefix(call, prefixes, prefix)
    return waiting.job_id


def _complete_prefix(call: _Call, prefixes: Prefixes, prefix: str) -> None:
    """Build the prefix's bundle and start its job, if every file it lists has arrived."""
    store = prefixes.store
    with prefixes.locked(call.user, prefix):
        waiting = prefixes.get(call.user, prefix)
        meta = store.get(call.user, prefix + METADATA_NAME)
        if waiting is None or meta is None or store.data(meta) is None:
            return
        raw, _document, entries = _read_document(store, meta, call.rt.settings.metadata_limit)
        absent = missing(store, call.user, prefix, entries)
        job_id = waiting.job_id
        if absent:
            logger.info("job %s: %d of the %d files of %s have not arrived yet", job_id, len(absent), len(entries),
                        prefix or "the bucket")
            return
        path = call.rt.spool.bundle_path(job_id)
        try:
            records = build_bundle(store, path, raw, call.user, prefix, entries)
        except OSError as exc:
            prefixes.done(call.user, prefix)
            logger.error("job %s: the bundle of %s could not be built: %s", job_id, prefix, exc)
            fail(job_id, f"the bundle of the objects under {prefix[:200]!r} could not be built")
            raise S3Error("InternalError", "the bundle of the prefix could not be built") from None
        for stored, entry in zip(records, entries, strict=True):
            stored.job_id, stored.member = job_id, entry.path
            stored.metadata[JOB_META] = str(job_id)
            store.save(stored)
        meta.job_id = job_id
        store.save(meta)
        prefixes.done(call.user, prefix)
        total = os.path.getsize(path)
        record.upload_whole(job_id, total)
        enqueue(make_context(job_id, path, call.user))
        RECEIVED_BUNDLES.labels("s3").inc()
        logger.info("job %s: the %d files under %s made a bundle", job_id, len(entries), prefix or "the bucket")


def _object(call: _Call) -> ObjectRecord:
    stored = store_of(call.rt).get(call.user, call.key)
    if stored is None:
        raise S3Error("NoSuchKey", "The specified key does not exist.")
    return stored


def _object_headers(call: _Call, stored: ObjectRecord, whole: bool = True) -> None:
    headers = cherrypy.response.headers
    headers["ETag"] = f'"{stored.etag}"'
    headers["Last-Modified"] = protocol.http_date(stored.modified)
    headers["Content-Type"] = stored.content_type or "binary/octet-stream"
    headers["Accept-Ranges"] = "bytes"
    for name, value in stored.metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    if stored.job_id is not None:
        headers[JOB_HEADER] = str(stored.job_id)
    if whole and (call.header("x-amz-checksum-mode") or "").upper() == "ENABLED":
        headers.update(_checksum_headers(stored))  # the whole object's: never with a part of it
    if stored.parts:
        headers["x-amz-mp-parts-count"] = str(stored.parts)


def head_object(call: _Call) -> bytes:
    """``HeadObject``."""
    stored = _object(call)
    _object_headers(call, stored)
    cherrypy.response.headers["Content-Length"] = str(stored.size)
    return b""


def _range(call: _Call, size: int) -> tuple[int, int] | None:
    text = call.header("Range")
    if not text:
        return None
    unit, _, spec = text.partition("=")
    first, _, last = spec.partition("-")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError(text)
        if not first:
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last)) if last else size - 1
    except ValueError:
        return None
    if start >= size or start > end:
        raise S3Error("InvalidRange", "The requested range is not satisfiable",
                      headers={"Content-Range": f"bytes */{size}"})
    return start, end


def get_object(call: _Call) -> Iterator[bytes] | bytes:
    """``GetObject``: from the volume while it waits, else from the archive once its job is done."""
    store = store_of(call.rt)
    stored = _object(call)
    wanted = _range(call, stored.size)
    start, end = wanted or (0, stored.size - 1)
    path = store.data(stored)
    if path is not None:
        blocks = _file_blocks(path, start, end + 1 - start, call.rt.spool.block_size)
    else:
        blocks = _archived_blocks(call, stored, start, end + 1 - start)
    _object_headers(call, stored, whole=wanted is None)
    headers = cherrypy.response.headers
    headers["Content-Length"] = str(max(0, end + 1 - start))
    if wanted is not None:
        cherrypy.response.status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
    cherrypy.response.stream = True
    return blocks


def _file_blocks(path: str, start: int, length: int, block: int) -> Iterator[bytes]:
    handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
    handle.seek(start)

    def blocks() -> Iterator[bytes]:
        left = length
        with handle:
            while left > 0:
                data = handle.read(min(block, left))
                if not data:
                    return
                left -= len(data)
                yield data

    return blocks()


def _archived_blocks(call: _Call, stored: ObjectRecord, start: int, length: int) -> Iterator[bytes]:
    if stored.job_id is None or stored.member is None:
        if stored.job_id is not None:
            raise S3Error("InvalidObjectState", f"the bundle was ingested as job {stored.job_id}: its files are in "
                                                "the archive, and a cart of the job downloads them")
        raise S3Error("NoSuchKey", "The specified key does not exist.")
    state = models.read_state(stored.job_id)
    row = (archived.IngestArchivedFile.get_or_none((archived.IngestArchivedFile.job_id == stored.job_id)
                                                   & (archived.IngestArchivedFile.name == stored.member))
           if state.complete else None)
    if row is None:
        raise S3Error("InvalidObjectState", f"the object is part of job {stored.job_id} ({state.state}, "
                                            f"{state.task}): it can be read once the job is complete")
    source = call.rt.peers.archive.read(int(row.file_id), call.rt.spool.block_size)

    def blocks() -> Iterator[bytes]:
        skip, left = start, length
        try:
            for data in source:
                if skip:
                    if len(data) <= skip:
                        skip -= len(data)
                        continue
                    data, skip = data[skip:], 0
                if left <= 0:
                    return
                data = data[:left]
                left -= len(data)
                yield data
        finally:
            with contextlib.suppress(Exception):
                source.close()  # type: ignore[attr-defined]

    return blocks()


def delete_object(call: _Call) -> bytes:
    """``DeleteObject``: the object's bytes (if still waiting) and record; archived files stay."""
    store_of(call.rt).delete(call.user, call.key)
    cherrypy.response.status = 204
    return b""


# ---- multipart uploads ------------------------------------------------------------------


def create_multipart(call: _Call) -> bytes:
    """``CreateMultipartUpload``."""
    algorithm = (call.header("x-amz-checksum-algorithm") or "").lower()
    if algorithm and algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"checksum algorithm {algorithm.upper()[:20]} is not supported")
    kind = (call.header("x-amz-checksum-type") or "").upper()
    if algorithm:
        allowed = MULTIPART_TYPES[algorithm]
        kind = kind or allowed[0]
        if kind not in allowed:
            raise S3Error("InvalidRequest", f"{algorithm.upper()} supports the checksum type "
                                            f"{' or '.join(allowed)}, not {kind[:20]}")
    upload = store_of(call.rt).create_upload(call.user, call.key, algorithm, kind if algorithm else "",
                                             call.header("Content-Type") or "", _metadata(call))
    if algorithm:
        cherrypy.response.headers["x-amz-checksum-algorithm"] = algorithm.upper()
        cherrypy.response.headers["x-amz-checksum-type"] = kind
    return protocol.render(element("InitiateMultipartUploadResult",
                                   {"Bucket": BUCKET, "Key": call.key, "UploadId": upload.upload_id}))


def upload_part(call: _Call) -> bytes:
    """``UploadPart``: kept only if its checksum holds."""
    if call.header("x-amz-copy-source"):
        raise S3Error("NotImplemented", "UploadPartCopy is not supported by this door")
    store = store_of(call.rt)
    upload = store.upload(call.user, call.params.get("uploadId", ""), call.key)
    try:
        number = int(call.params.get("partNumber", ""))
    except ValueError:
        raise S3Error("InvalidArgument", "partNumber must be an integer") from None
    length = _declared_length(call)
    _room(call, length)
    reader = _reader(call)
    part = store.put_part(upload, number, reader, _expected(call, reader), call.rt.settings.max_upload_size)
    RECEIVED_BYTES.labels("s3").inc(part.size)
    cherrypy.response.headers["ETag"] = f'"{part.etag}"'
    if upload.algorithm:
        cherrypy.response.headers[f"x-amz-checksum-{upload.algorithm}"] = part.checksum
    return b""


def list_parts(call: _Call) -> bytes:
    """``ListParts``."""
    store = store_of(call.rt)
    upload = store.upload(call.user, call.params.get("uploadId", ""), call.key)
    marker = _int_param(call, "part-number-marker", 0)
    most = min(MAX_LIST, _int_param(call, "max-parts", MAX_LIST))
    parts = [part for part in store.parts(upload) if part.number > marker]
    shown, truncated = parts[:most], len(parts) > most
    root = element("ListPartsResult", {"Bucket": BUCKET, "Key": upload.key, "UploadId": upload.upload_id,
                                       "PartNumberMarker": marker,
                                       "NextPartNumberMarker": shown[-1].number if shown else marker,
                                       "MaxParts": most, "IsTruncated": truncated,
                                       "ChecksumAlgorithm": upload.algorithm.upper() or None,
                                       "ChecksumType": upload.checksum_type or None})
    for part in shown:
        root.append(element("Part", {"PartNumber": part.number, "LastModified": protocol.timestamp(part.modified),
                                     "ETag": f'"{part.etag}"', "Size": part.size,
                                     f"Checksum{upload.algorithm.upper()}": part.checksum or None},
                            namespace=False))
    return protocol.render(root)


def abort_multipart(call: _Call) -> bytes:
    """``AbortMultipartUpload``: the parts' space is free at once."""
    store = store_of(call.rt)
    store.abort(store.upload(call.user, call.params.get("uploadId", ""), call.key))
    cherrypy.response.status = 204
    return b""


def complete_multipart(call: _Call) -> bytes:
    """``CompleteMultipartUpload``: the parts, in order, become the object (a bundle: a job)."""
    store = store_of(call.rt)
    upload = store.upload(call.user, call.params.get("uploadId", ""), call.key)
    body = cherrypy.request.rfile.read(protocol.MAX_XML + 1)
    named = protocol.completion_parts(protocol.parse(body))
    parts = store.chosen_parts(upload, named)
    if_none_match = _if_none_match(call)
    full = call.header(f"x-amz-checksum-{upload.algorithm}") if upload.algorithm else None
    if is_bundle_key(upload.key):
        if if_none_match and store.get(call.user, upload.key) is not None:
            raise S3Error("PreconditionFailed", "an object with this key exists already (If-None-Match: *)")
        whole = whole_algorithm(upload)
        hashers = Hashers([whole] if whole else [])
        reader = PartsReader([store.part_path(upload, part.number) for part in parts])
        try:
            job_id, size = _receive_bundle(call, upload.key, HashingBody(reader, hashers), sum(p.size for p in parts),
                                           hashers, upload.metadata.get("project"), upload.metadata.get("instrument"))
        finally:
            reader.close()
        if whole and full and decode(full) != hashers.digest(whole):
            call.rt.spool.discard(job_id)
            fail(job_id, f"the object {upload.key[:200]} did not match its full-object checksum")
            raise S3Error("BadDigest", f"the {whole.upper()} you specified for the whole object did not match")
        stored = ObjectRecord(upload.key, call.user, size, multipart_etag(parts),
                              multipart_checksums(upload, parts, hashers),
                              upload.checksum_type if upload.algorithm else "", time.time(), upload.content_type,
                              {**upload.metadata, JOB_META: str(job_id)}, job_id=job_id, parts=len(parts))
        store.save(stored)
        store.abort(upload)
        _start_job(call, job_id, size)
    else:
        stored = store.complete(upload, parts, full, if_none_match)
        _arrived(call, stored)
    fields: dict[str, object] = {"Location": f"/{BUCKET}/{urllib.parse.quote(upload.key)}", "Bucket": BUCKET,
                                 "Key": upload.key, "ETag": f'"{stored.etag}"'}
    for name, value in stored.checksums.items():
        fields[f"Checksum{name.upper()}"] = value
    if stored.checksum_type:
        fields["ChecksumType"] = stored.checksum_type
    return protocol.render(element("CompleteMultipartUploadResult", fields))


def list_uploads(call: _Call) -> bytes:
    """``ListMultipartUploads``: the caller's uploads in progress."""
    prefix = call.params.get("prefix", "")
    uploads = [upload for upload in store_of(call.rt).uploads(call.user) if upload.key.startswith(prefix)]
    most = min(MAX_LIST, _int_param(call, "max-uploads", MAX_LIST))
    root = element("ListMultipartUploadsResult", {"Bucket": BUCKET, "KeyMarker": "", "UploadIdMarker": "",
                                                  "Prefix": prefix, "MaxUploads": most,
                                                  "IsTruncated": len(uploads) > most})
    for upload in uploads[:most]:
        root.append(element("Upload", {"Key": upload.key, "UploadId": upload.upload_id,
                                       "Initiated": protocol.timestamp(upload.created), "StorageClass": "STANDARD",
                                       "ChecksumAlgorithm": upload.algorithm.upper() or None}, namespace=False))
    return protocol.render(root)


# ---- the bucket --------------------------------------------------------------------------


def _int_param(call: _Call, name: str, default: int) -> int:
    value = call.params.get(name)
    return default if value is None or value == "" else _count(name, value)


def list_objects(call: _Call) -> bytes:
    """``ListObjects`` (v1) and ``ListObjectsV2``: the caller's objects, with common prefixes."""
    v2 = call.params.get("list-type") == "2"
    prefix = call.params.get("prefix", "")
    delimiter = call.params.get("delimiter", "")
    url = call.params.get("encoding-type", "").lower() == "url"
    most = min(MAX_LIST, _int_param(call, "max-keys", MAX_LIST))
    if v2:
        token = call.params.get("continuation-token")
        after = _token_key(token) if token else call.params.get("start-after", "")
    else:
        after = call.params.get("marker", "")
    contents: list[ObjectRecord] = []
    common: list[str] = []
    last = after
    truncated = False
    for stored in store_of(call.rt).listing(call.user, prefix, after):
        rest = stored.key[len(prefix):]
        folder = prefix + rest[:rest.index(delimiter) + len(delimiter)] if delimiter and delimiter in rest else None
        if folder is not None and common and common[-1] == folder:
            last = stored.key
            continue
        if len(contents) + len(common) >= most:
            truncated = True
            break
        if folder is not None:
            common.append(folder)
        else:
            contents.append(stored)
        last = stored.key
    fields: dict[str, object] = {"Name": BUCKET, "Prefix": protocol.encoded(prefix, url), "MaxKeys": most,
                                 "Delimiter": protocol.encoded(delimiter, url) if delimiter else None,
                                 "EncodingType": "url" if url else None, "IsTruncated": truncated}
    if v2:
        fields.update({"KeyCount": len(contents) + len(common),
                       "ContinuationToken": call.params.get("continuation-token"),
                       "NextContinuationToken": _token(last) if truncated else None,
                       "StartAfter": call.params.get("start-after")})
    else:
        fields.update({"Marker": protocol.encoded(after, url),
                       "NextMarker": protocol.encoded(last, url) if truncated else None})
    root = element("ListBucketResult", fields)
    for stored in contents:
        root.append(element("Contents", {"Key": protocol.encoded(stored.key, url),
                                         "LastModified": protocol.timestamp(stored.modified),
                                         "ETag": f'"{stored.etag}"', "Size": stored.size,
                                         "StorageClass": "STANDARD"}, namespace=False))
    for folder in common:
        root.append(element("CommonPrefixes", {"Prefix": protocol.encoded(folder, url)}, namespace=False))
    return protocol.render(root)


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8", "surrogateescape")).decode("ascii")


def _token_key(token: str) -> str:
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8", "surrogateescape")
    except (ValueError, UnicodeError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


def delete_objects(call: _Call) -> bytes:
    """``DeleteObjects``: several keys at once."""
    root = protocol.parse(cherrypy.request.rfile.read(protocol.MAX_XML + 1))
    store = store_of(call.rt)
    quiet = False
    result = element("DeleteResult")
    for child in root:
        if protocol.local(child.tag) == "Quiet":
            quiet = (child.text or "").strip().lower() == "true"
        if protocol.local(child.tag) != "Object":
            continue
        key = next(((item.text or "") for item in child if protocol.local(item.tag) == "Key"), "")
        store.delete(call.user, key)
        if not quiet:
            result.append(element("Deleted", {"Key": key}, namespace=False))
    return protocol.render(result)


def list_buckets(call: _Call) -> bytes:
    """``ListBuckets``: the one bucket."""
    root = element("ListAllMyBucketsResult", {"Owner": element("Owner", {"ID": call.user, "DisplayName": call.user},
                                                               namespace=False)})
    buckets = element("Buckets", namespace=False)
    buckets.append(element("Bucket", {"Name": BUCKET, "CreationDate": protocol.timestamp(0)}, namespace=False))
    root.append(buckets)
    return protocol.render(root)


def _bucket_call(call: _Call) -> Any:
    method, params = call.method, call.params
    if method == "HEAD":
        cherrypy.response.headers["x-amz-bucket-region"] = call.rt.settings.s3_region
        return b""
    if method == "GET":
        if "location" in params:
            region = call.rt.settings.s3_region
            root = element("LocationConstraint")
            root.text = "" if region == "us-east-1" else region
            return protocol.render(root)
        if "uploads" in params:
            return list_uploads(call)
        for unsupported in ("versioning", "acl", "policy", "lifecycle", "cors", "tagging", "versions"):
            if unsupported in params:
                raise S3Error("NotImplemented", f"the bucket's {unsupported} is not supported by this door")
        return list_objects(call)
    if method == "PUT":  # CreateBucket of the one bucket (rclone makes sure it exists)
        cherrypy.response.headers["Location"] = f"/{BUCKET}"
        return b""
    if method == "POST" and "delete" in params:
        return delete_objects(call)
    raise S3Error("MethodNotAllowed", f"{method} of the bucket is not allowed")


def _object_call(call: _Call) -> Any:
    method, params = call.method, call.params
    if method == "PUT":
        return upload_part(call) if "uploadId" in params or "partNumber" in params else put_object(call)
    if method == "POST":
        if "uploads" in params:
            return create_multipart(call)
        if "uploadId" in params:
            return complete_multipart(call)
        raise S3Error("MethodNotAllowed", "POST of an object needs ?uploads or ?uploadId")
    if method == "GET":
        return list_parts(call) if "uploadId" in params else get_object(call)
    if method == "HEAD":
        return head_object(call)
    if method == "DELETE":
        return abort_multipart(call) if "uploadId" in params else delete_object(call)
    raise S3Error("MethodNotAllowed", f"{method} is not allowed")


def handle(rt: Runtime) -> Any:
    """Answer the request: authenticate, dispatch, and turn every refusal into S3's XML."""
    rid = protocol.request_id()
    response = cherrypy.response
    response.headers["x-amz-request-id"] = rid
    response.headers["Server"] = "pacifica-ingest"
    response.headers["Content-Type"] = "application/xml"
    call = _Call(rt)
    try:
        _authenticate(call)
        if not call.bucket:
            if call.method != "GET":
                raise S3Error("MethodNotAllowed", f"{call.method} of the service is not allowed")
            return list_buckets(call)
        if call.bucket != BUCKET:
            raise S3Error("NoSuchBucket" if call.method != "PUT" else "AccessDenied",
                          f"the only bucket is {BUCKET!r}")
        return _object_call(call) if call.key else _bucket_call(call)
    except S3Error as exc:
        return _error(call, exc, rid)
    except S3Failure as exc:
        return _error(call, S3Error(exc.code, str(exc), exc.status), rid)
    except sigv4.SignatureError as exc:
        return _error(call, S3Error(exc.code, str(exc)), rid)
    except WireError as exc:
        return _error(call, S3Error(exc.code, str(exc)), rid)
    except (peewee.PeeweeException, PeerError) as exc:
        logger.error("S3 %s %s: %s", call.method, call.resource, exc)
        return _error(call, S3Error("ServiceUnavailable", "a service this door needs is unavailable; try again"), rid)
    except cherrypy.HTTPError as exc:
        return _error(call, S3Error("ServiceUnavailable" if exc.status >= 500 else "InvalidRequest",
                                    exc._message or "refused", exc.status), rid)
    except OSError as exc:
        logger.error("S3 %s %s: %s", call.method, call.resource, exc)
        return _error(call, S3Error("InternalError", "the request could not be completed; try again"), rid)


# A refused body up to this size is read (and dropped) before the answer, so that the client,
# still sending it, reads the error instead of a broken connection; a larger one closes it.
DRAIN_LIMIT = 16 << 20


def _drained() -> bool:
    """Read what is left of a refused request body (a fixed length, or HTTP chunks), if it is
    small; whether it is all read."""
    rfile = cherrypy.request.rfile
    remaining = getattr(rfile, "remaining", None)
    if remaining is not None and remaining > DRAIN_LIMIT:
        return False
    budget = DRAIN_LIMIT
    try:
        while budget > 0:
            data = rfile.read(min(budget, 1 << 16) if remaining is None else min(rfile.remaining, 1 << 16))
            if not data:
                return True
            budget -= len(data)
    except (OSError, ValueError):
        return False
    return False


def _error(call: _Call, exc: S3Error, rid: str) -> bytes:
    response = cherrypy.response
    response.status = exc.status
    for name in (JOB_HEADER, "ETag"):
        response.headers.pop(name, None)
    response.headers.update(exc.headers)
    if call.method in ("PUT", "POST") and not _drained():
        response.headers["Connection"] = "close"  # the body is unread: never read it as a request
    if exc.status >= 500:
        logger.warning("S3 %s %s: %s %s", call.method, call.resource, exc.code, exc.message)
    else:
        logger.info("S3 %s %s: %s %s", call.method, call.resource, exc.code, exc.message)
    if call.method == "HEAD":
        return b""
    return protocol.error_body(exc.code, public_text(exc.message), call.resource, rid)


class S3Root:
    """Every path of the door: ``/``, ``/ingest`` and ``/ingest/<key>``, any method."""

    exposed = True

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _answer(self) -> Any:
        return handle(self.rt)

    def GET(self, *_args: Any, **_kwargs: Any) -> Any:
        """Objects, listings, parts."""
        return self._answer()

    def HEAD(self, *_args: Any, **_kwargs: Any) -> Any:
        """An object's or the bucket's headers."""
        return self._answer()

    def PUT(self, *_args: Any, **_kwargs: Any) -> Any:
        """Objects and parts."""
        return self._answer()

    def POST(self, *_args: Any, **_kwargs: Any) -> Any:
        """Multipart creation and completion, deletion of several objects."""
        return self._answer()

    def DELETE(self, *_args: Any, **_kwargs: Any) -> Any:
        """Objects and multipart uploads."""
        return self._answer()


def _release() -> None:
    with contextlib.suppress(peewee.PeeweeException):
        release_connection(models.DB.obj)


cherrypy.tools.s3_release_connection = cherrypy.Tool("on_end_request", _release)


def _lower_amz_headers() -> None:
    """S3 sends ``x-amz-*`` header names in lower case, and clients hand user metadata on with the
    case it came in (``Metadata['pacifica-job-id']``); CherryPy writes every name in title case."""
    response = cherrypy.serving.response
    response.header_list = [(name.lower() if name.lower().startswith((b"x-amz-", b"x-pacifica-")) else name, value)
                            for name, value in response.header_list]


cherrypy.tools.s3_lower_headers = cherrypy.Tool("on_end_resource", _lower_amz_headers)


def _unexpected() -> None:
    """A failure no handler expected: S3's InternalError, the traceback to the log only."""
    logger.error("S3 door: unexpected failure", exc_info=True)  # noqa: LOG014 - CherryPy calls it while handling
    response = cherrypy.serving.response
    response.status = 500
    response.headers["Content-Type"] = "application/xml"
    response.headers["Connection"] = "close"
    response.body = protocol.error_body("InternalError", "We encountered an internal error. Please try again.",
                                        cherrypy.serving.request.path_info, protocol.request_id())


def _error_page(status: str, message: str, traceback: str, version: str) -> bytes:
    code = int(str(status).split()[0])
    cherrypy.serving.response.headers["Content-Type"] = "application/xml"
    name = {404: "NoSuchKey", 405: "MethodNotAllowed", 413: "EntityTooLarge"}.get(code, "InvalidRequest")
    return protocol.error_body(name, str(message)[:300], cherrypy.serving.request.path_info, protocol.request_id())


def make_s3_app(rt: Runtime) -> cherrypy.Application:
    """The door's CherryPy application (MethodDispatcher), serving ``rt``."""
    app = cherrypy.Application(S3Root(rt), "", config={"/": {
        "request.dispatch": cherrypy.dispatch.MethodDispatcher(),
        "request.process_request_body": False,
        "request.show_tracebacks": False,
        "request.error_response": _unexpected,
        "error_page.default": _error_page,
        "tools.trailing_slash.on": False,
        "tools.s3_release_connection.on": True,
        "tools.s3_lower_headers.on": True,
        "tools.encode.on": False,
    }})
    app.runtime = rt
    return app
