"""``/uploads/``: resumable uploads with the tus 1.0.0 protocol, beside the classic ``POST /upload``.

``POST /uploads/`` (``Upload-Length``, optional ``Upload-Metadata``) creates the job and
answers ``201`` with its URL, ``/uploads/<job_id>``, in ``Location``. ``HEAD`` tells the offset,
``PATCH`` appends a chunk at it (``Upload-Checksum`` optional), ``DELETE`` ends the upload.
While bytes arrive the job is UPLOADING with the percent received; the last byte starts the same
chain of stages as ``/upload``. The uploader's user is the auth header of the creation, and a
``callback_url`` may come as a header, a query parameter or an ``Upload-Metadata`` key.
"""

from __future__ import annotations

import email.utils
import hmac
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import cherrypy

from ...core.auth.web import current_identity, may_see
from ...core.web import refuse_body
from ..common.metrics import RECEIVED_BUNDLES, RECEIVED_BYTES
from ..db.archived import Owner
from ..jobs import admission, quotas, record
from ..jobs.runtime import Runtime
from ..jobs.stages import make_context
from ..volume.body import request_body
from ..volume.resumable import (
    PARTIAL_ID,
    VERSION,
    TusError,
    TusStore,
    Upload,
    UploadKey,
    parse_checksum,
    parse_metadata,
)
from .kit import (
    callback_url,
    current_runtime,
    database_errors,
    enqueue,
    fail,
    get_authed_user,
    integer_header,
    new_job,
    owners_apart,
    parse_job_id,
    quota_refusal,
    required_integer_header,
)

logger = logging.getLogger(__name__)

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
SECRET = re.compile(r"^[0-9a-f]{32}$")


def store(rt: Runtime) -> TusStore:
    """The resumable uploads on the volume of ``rt`` (one store per process)."""
    return rt.uploads


def _headers() -> None:
    headers = cherrypy.response.headers
    headers["Tus-Resumable"] = VERSION
    headers["Cache-Control"] = "no-store"


def _require_version() -> None:
    _headers()
    given = cherrypy.request.headers.get("Tus-Resumable")
    if given != VERSION:
        cherrypy.response.headers["Tus-Version"] = VERSION
        raise refuse_body(412, f"Tus-Resumable must be {VERSION}, got {given!r}")


def _http_error(exc: TusError) -> cherrypy.HTTPError:
    status = "460 Checksum Mismatch" if exc.status == 460 else exc.status
    cherrypy.response.headers["Connection"] = "close"
    return cherrypy.HTTPError(status, str(exc))


def _expires_header(uploads: TusStore, job_id: UploadKey) -> None:
    expires = uploads.expires_at(job_id)
    if expires is not None:
        cherrypy.response.headers["Upload-Expires"] = email.utils.formatdate(expires, usegmt=True)


class RestUploads:
    """The tus resource: ``/uploads/`` and ``/uploads/<job_id>``."""

    exposed = True
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    def OPTIONS(*_args: Any, **_kwargs: Any) -> bytes:
        """Tell what this server supports."""
        _headers()
        uploads = store(current_runtime())
        headers = cherrypy.response.headers
        headers["Tus-Version"] = VERSION
        headers["Tus-Extension"] = ",".join(uploads.extensions)
        headers["Tus-Checksum-Algorithm"] = ",".join(uploads.checksum_algorithms)
        if current_runtime().settings.max_upload_size:
            headers["Tus-Max-Size"] = str(current_runtime().settings.max_upload_size)
        cherrypy.response.status = 204
        return b""

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def POST(*args: Any, authed_user: str, **kwargs: Any) -> dict[str, Any]:
        """Create an upload: its job, UPLOADING at 0 % (a partial upload: no job; a final one: the
        job, from its partials). The first bytes may come with it (creation-with-upload)."""
        _require_version()
        if args:
            raise refuse_body(405, "create uploads with POST /uploads/")
        rt = current_runtime()
        uploads = store(rt)
        concat = cherrypy.request.headers.get("Upload-Concat", "").strip()
        if concat:
            _require_extension(uploads, "concatenation")
        try:
            metadata = parse_metadata(cherrypy.request.headers.get("Upload-Metadata"))
        except TusError as exc:
            raise _http_error(exc) from None
        # creation-with-upload: the first bytes come with the creation.
        with_body = (integer_header("Content-Length") or 0) > 0
        if with_body:
            _require_extension(uploads, "creation-with-upload")
        if with_body and cherrypy.request.headers.get("Content-Type", "").split(";")[0].strip() != OFFSET_CONTENT_TYPE:
            raise refuse_body(415, f"bytes sent with the creation must be Content-Type: {OFFSET_CONTENT_TYPE}")
        if concat.startswith("final;"):
            return _create_final(rt, concat[len("final;"):], authed_user, metadata, kwargs)
        if concat not in ("", "partial"):
            raise refuse_body(400, f"Upload-Concat must be 'partial' or 'final;<urls>', got {concat[:60]!r}")
        length = _creation_length(rt, uploads)
        owner = _owner(authed_user, metadata)
        if concat == "partial":
            _admit_partial(rt, uploads, authed_user, length)
            _admitted(lambda: quotas.check(owner, length, None, "the partial upload"))
            upload = uploads.create(None, length, authed_user, metadata, concat="partial")
            logger.info("partial upload %s of %s bytes created for %s", upload.job_id, length, authed_user)
        else:
            callback = callback_url({**kwargs, **({"callback_url": metadata["callback_url"]}
                                                   if metadata.get("callback_url") else {})}, body_unread=True)
            job_id = new_job(callback, authed_user, size=length, project=owner.project, instrument=owner.instrument)
            try:
                upload = uploads.create(job_id, length, authed_user, metadata)
            except OSError as exc:
                fail(job_id, f"the upload could not be started: {exc}")
                raise cherrypy.HTTPError(507, f"the upload could not be started: {exc}") from None
            with database_errors(job_id):
                record.received(job_id, 0, length or 0)
            logger.info("job %s: resumable upload of %s bytes created for %s", job_id, length, authed_user)
        cherrypy.response.status = 201
        cherrypy.response.headers["Location"] = cherrypy.url(f"/uploads/{upload.url_id}")
        offset = _receive(rt, uploads, upload, 0) if with_body else 0
        cherrypy.response.headers["Upload-Offset"] = str(offset)
        _expires_header(uploads, upload.job_id)
        return {"job_id": upload.job_id, "location": f"/uploads/{upload.url_id}", "length": length}

    @staticmethod
    def HEAD(upload_id: Any = None, *_args: Any, **_kwargs: Any) -> bytes:
        """Tell how many bytes of the upload have arrived."""
        _require_version()
        uploads = store(current_runtime())
        upload = _owned_upload(uploads, upload_id)
        headers = cherrypy.response.headers
        headers["Upload-Offset"] = str(uploads.offset(upload.job_id))
        if upload.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(upload.length)
        if upload.partial:
            headers["Upload-Concat"] = "partial"
        _expires_header(uploads, upload.job_id)
        return b""

    @staticmethod
    def PATCH(upload_id: Any = None, *_args: Any, **_kwargs: Any) -> bytes:
        """Append a chunk at ``Upload-Offset``; the last byte starts the job's stages."""
        _require_version()
        if cherrypy.request.headers.get("Content-Type", "").split(";")[0].strip() != OFFSET_CONTENT_TYPE:
            raise refuse_body(415, f"a PATCH body must be sent as Content-Type: {OFFSET_CONTENT_TYPE}")
        offset = required_integer_header("Upload-Offset")
        rt = current_runtime()
        uploads = store(rt)
        upload = _owned_upload(uploads, upload_id)
        received = _receive(rt, uploads, upload, offset)
        cherrypy.response.headers["Upload-Offset"] = str(received)
        _expires_header(uploads, upload.job_id)
        cherrypy.response.status = 204
        return b""

    @staticmethod
    def DELETE(upload_id: Any = None, *_args: Any, **_kwargs: Any) -> bytes:
        """End an unfinished upload: its bytes are removed and its job fails."""
        _require_version()
        uploads = store(current_runtime())
        _require_extension(uploads, "termination", 405)
        upload = _owned_upload(uploads, upload_id)
        if upload.partial and uploads.claimed(upload.job_id):
            raise refuse_body(409, f"partial upload {upload.job_id} is being concatenated by a final upload")
        uploads.discard(upload.job_id)
        if not upload.partial:
            with database_errors(upload.job):
                record.upload_failed(upload.job, "the upload was ended by the client (tus termination)")
        cherrypy.response.status = 204
        return b""


def _upload_key(upload_id: Any) -> tuple[int | str, str]:
    """A partial upload's id as it is, else a job id and the URL's secret (400 if it is neither)."""
    if isinstance(upload_id, str) and PARTIAL_ID.match(upload_id):
        return upload_id, ""
    job, _, secret = str(upload_id or "").partition("-")
    if secret and not SECRET.match(secret):
        raise refuse_body(400, f"{str(upload_id)[:80]!r} is not an upload id of this server")
    return parse_job_id(job), secret


def _owned_upload(uploads: TusStore, upload_id: Any) -> Upload:
    """The upload ``upload_id`` names, if its URL is whole (its secret) and, once identities are
    configured, it is the caller's; 404 otherwise (the same answer for another user's upload as for
    none, so that none can be probed)."""
    identity = current_identity("upload")
    key, secret = _upload_key(upload_id)
    upload = uploads.get(key)
    if (upload is None or not hmac.compare_digest(upload.secret, secret)
            or not may_see(upload.user, identity, owners_apart())):
        raise refuse_body(404, f"upload {str(upload_id)[:80]} does not exist (finished, ended or expired)")
    return upload


def _require_extension(uploads: TusStore, extension: str, status: int = 400) -> None:
    """Refuse a request that needs a tus extension the store does not declare."""
    if extension not in uploads.extensions:
        raise refuse_body(status, f"this server does not support the tus {extension} extension")


def _creation_length(rt: Runtime, uploads: TusStore) -> int | None:
    """``Upload-Length``, or None with ``Upload-Defer-Length: 1``; 413/507 when it cannot fit."""
    deferred = cherrypy.request.headers.get("Upload-Defer-Length")
    if deferred is not None:
        _require_extension(uploads, "creation-defer-length")
        if deferred.strip() != "1":
            raise refuse_body(400, f"Upload-Defer-Length must be 1, got {deferred[:20]!r}")
        if cherrypy.request.headers.get("Upload-Length") is not None:
            raise refuse_body(400, "give Upload-Length or Upload-Defer-Length, not both")
        return None
    length = required_integer_header("Upload-Length")
    if length == 0:
        raise refuse_body(400, "Upload-Length is 0: a bundle is a tar of at least one block")
    _check_room(rt, length)
    return length


def _admitted(check: Callable[[], None]) -> None:
    """Run an admission ``check``; its refusal is answered at once, the body unread."""
    try:
        check()
    except admission.Refused as exc:
        raise quota_refusal(exc) from None


def _owner(user: str, metadata: dict[str, str]) -> Owner:
    """Whom an upload counts against: its user, and the project and instrument its
    ``Upload-Metadata`` names (``project``, ``instrument``), if it does."""
    return Owner(user, metadata.get("project") or None, metadata.get("instrument") or None)


def _check_room(rt: Runtime, length: int) -> None:
    _admitted(lambda: admission.bundle(length, rt.settings.max_upload_size, rt.spool))


def _admit_partial(rt: Runtime, uploads: TusStore, user: str, length: int | None) -> None:
    _admitted(lambda: admission.partial(user, length, uploads.partials_of(user), rt.settings.max_partials,
                                        rt.settings.max_upload_size))


def _receive(rt: Runtime, uploads: TusStore, upload: Upload, offset: int) -> int:
    """Write the request body at ``offset`` (a deferred length may come with it); complete the
    upload when its last byte arrived. Return the new offset."""
    given = integer_header("Upload-Length")
    try:
        if given is not None:
            _check_room(rt, given)
            if not upload.partial:
                _admitted(lambda: quotas.resize(upload.job, _owner(upload.user, upload.metadata), given))
            upload = uploads.set_length(upload, given)
        header = cherrypy.request.headers.get("Upload-Checksum")
        if header is not None:
            _require_extension(uploads, "checksum")
        checksum = parse_checksum(header)
        progress = None if upload.partial or upload.length is None else (
            lambda done: record.received(upload.job, done, upload.length))
        received = uploads.append(upload, offset, request_body(cherrypy.request.rfile),
                                  integer_header("Content-Length"), checksum,
                                  rt.spool.block_size, progress, limit=rt.settings.max_upload_size)
    except TusError as exc:
        if exc.status == 507:
            logger.warning("upload %s: %s", upload.job_id, exc)
        raise _http_error(exc) from None
    RECEIVED_BYTES.labels("tus").inc(max(0, received - offset))
    if upload.length is None or received < upload.length:
        if not upload.partial:
            with database_errors(upload.job):
                record.received(upload.job, received, upload.length or 0)
        return received
    if not upload.partial:
        _complete(uploads, upload)
        RECEIVED_BUNDLES.labels("tus").inc()
    return received


def _create_final(rt: Runtime, urls: str, user: str, metadata: dict[str, str], kwargs: dict[str, Any]):
    """A final upload: its job's bundle is the named partial uploads' bytes, in order. Every
    partial must be this user's, complete and not used already; else 4xx and no job."""
    uploads = store(rt)
    names = urls.split()
    if not names:
        raise refuse_body(400, "Upload-Concat: final; names no partial upload")
    parts = []
    for name in names:
        key = name.rstrip("/").rsplit("/", 1)[-1]
        part = uploads.get(key) if PARTIAL_ID.match(key) else None
        if part is not None and part.user != user:
            part = None  # another user's partial is answered as none at all
        if part is None or not part.partial:
            raise refuse_body(404 if PARTIAL_ID.match(key) else 400,
                              f"{name[:100]!r} is not a partial upload of this server (unknown, used or expired)")
        if part.length is None or uploads.offset(key) < part.length:
            raise refuse_body(409, f"partial upload {key} is not complete "
                                   f"({uploads.offset(key)} of {part.length or 'an unknown number of'} bytes)")
        parts.append(part)
    if len({part.job_id for part in parts}) != len(parts):
        raise refuse_body(400, "Upload-Concat: final; names a partial upload twice")
    length = sum(part.length or 0 for part in parts)
    _admitted(lambda: admission.within_limit(length, rt.settings.max_upload_size))
    callback = callback_url({**kwargs, **({"callback_url": metadata["callback_url"]}
                                           if metadata.get("callback_url") else {})}, body_unread=True)
    # All the partials or none, before any job exists: of simultaneous finals one wins.
    if not uploads.claim(parts, 0):
        raise refuse_body(409, "a partial upload named is being concatenated by another final upload")
    owner = _owner(user, metadata)
    try:
        job_id = new_job(callback, user, size=length, project=owner.project, instrument=owner.instrument,
                         uploading=False)
    except BaseException:
        uploads.release(parts)
        raise
    started = time.monotonic()
    try:
        path, size = uploads.concatenate(parts, job_id, rt.spool.block_size)
    except (TusError, OSError) as exc:
        uploads.release(parts)
        logger.error("job %s: the partial uploads could not be concatenated: %s", job_id, exc)
        fail(job_id, "the partial uploads could not be concatenated (the server log has the details)")
        raise cherrypy.HTTPError(507 if getattr(exc, "status", 0) == 507 else 503,
                                 "the partial uploads could not be concatenated; try again") from None
    took = time.monotonic() - started
    logger.info("job %s: %d partial uploads concatenated (%d bytes) for %s in %.3f s", job_id, len(parts), size,
                user, took, extra={"job_id": job_id, "duration": round(took, 6)})
    with database_errors(job_id):
        record.upload_whole(job_id, size)
    enqueue(make_context(job_id, path, user))
    RECEIVED_BUNDLES.labels("tus").inc()
    cherrypy.response.status = 201
    cherrypy.response.headers["Location"] = cherrypy.url(f"/uploads/{job_id}")
    cherrypy.response.headers["Upload-Offset"] = str(size)
    return {"job_id": job_id, "location": f"/uploads/{job_id}", "length": size}


def _complete(uploads: TusStore, upload: Upload) -> None:
    """Hand a whole upload to the pipeline, as ``/upload`` does with a body."""
    path = uploads.finish(upload)
    logger.info("job %s: resumable upload complete (%d bytes)", upload.job_id, upload.length)
    with database_errors(upload.job):
        record.upload_whole(upload.job, upload.length or 0)
    enqueue(make_context(upload.job, path, upload.user))


