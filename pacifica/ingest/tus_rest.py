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
import logging
from typing import Any

import cherrypy

from . import models, states
from .httpbody import request_body
from .metrics import RECEIVED_BUNDLES, RECEIVED_BYTES
from .runtime import Runtime
from .stages import make_context
from .tus import CHECKSUM_ALGORITHMS, EXTENSIONS, VERSION, TusError, TusStore, parse_checksum, parse_metadata
from .webjobs import (
    callback_url,
    current_runtime,
    database_errors,
    enqueue,
    fail,
    get_authed_user,
    new_job,
    parse_job_id,
    refuse_body,
)

logger = logging.getLogger(__name__)

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"


def store(rt: Runtime) -> TusStore:
    """The resumable uploads on the volume of ``rt``."""
    return TusStore(rt.spool, rt.settings.upload_expiry)


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


def _integer_header(name: str, required: bool = True) -> int | None:
    value = cherrypy.request.headers.get(name)
    if value is None:
        if required:
            raise refuse_body(400, f"the {name} header is required")
        return None
    try:
        number = int(value)
        if number < 0:
            raise ValueError(value)
    except ValueError:
        raise refuse_body(400, f"{name} must be a non-negative integer, got {value[:40]!r}") from None
    return number


def _http_error(exc: TusError) -> cherrypy.HTTPError:
    status = "460 Checksum Mismatch" if exc.status == 460 else exc.status
    cherrypy.response.headers["Connection"] = "close"
    return cherrypy.HTTPError(status, str(exc))


def _expires_header(uploads: TusStore, job_id: int) -> None:
    expires = uploads.expires_at(job_id)
    if expires is not None:
        cherrypy.response.headers["Upload-Expires"] = email.utils.formatdate(expires, usegmt=True)


def report_received(job_id: int, received: int, length: int) -> None:
    """Record how much of an upload has arrived (UPLOADING, percent of bytes)."""
    percent = min(99.9, round(100.0 * received / length, 1)) if length else 0
    models.update_state(job_id, states.OK, states.UPLOADING, percent, progress=(received, length, 0, 0), event=False)


class RestUploads:
    """The tus resource: ``/uploads/`` and ``/uploads/<job_id>``."""

    exposed = True
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    def OPTIONS(*_args: Any, **_kwargs: Any) -> bytes:
        """Tell what this server supports."""
        _headers()
        headers = cherrypy.response.headers
        headers["Tus-Version"] = VERSION
        headers["Tus-Extension"] = EXTENSIONS
        headers["Tus-Checksum-Algorithm"] = ",".join(CHECKSUM_ALGORITHMS)
        if current_runtime().settings.max_upload_size:
            headers["Tus-Max-Size"] = str(current_runtime().settings.max_upload_size)
        cherrypy.response.status = 204
        return b""

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def POST(*args: Any, authed_user: str, **kwargs: Any) -> dict[str, Any]:
        """Create an upload: its job, UPLOADING at 0 %."""
        _require_version()
        if args:
            raise refuse_body(405, "create uploads with POST /uploads/")
        rt = current_runtime()
        if cherrypy.request.headers.get("Upload-Defer-Length"):
            raise refuse_body(400, "Upload-Defer-Length is not supported: give Upload-Length")
        length = _integer_header("Upload-Length")
        if length == 0:
            raise refuse_body(400, "Upload-Length is 0: a bundle is a tar of at least one block")
        if rt.settings.max_upload_size and length > rt.settings.max_upload_size:
            raise refuse_body(413, f"the upload of {length} bytes is larger than the "
                               f"{rt.settings.max_upload_size} byte limit")
        free = rt.spool.free_space()
        if length > free:
            raise refuse_body(507, f"the volume has {free} bytes free, the upload needs {length}")
        try:
            metadata = parse_metadata(cherrypy.request.headers.get("Upload-Metadata"))
        except TusError as exc:
            raise _http_error(exc) from None
        callback = callback_url({**kwargs, **({"callback_url": metadata["callback_url"]}
                                               if metadata.get("callback_url") else {})}, body_unread=True)
        job_id = new_job(callback, authed_user)
        uploads = store(rt)
        try:
            uploads.create(job_id, length, authed_user, metadata)
        except OSError as exc:
            fail(job_id, f"the upload could not be started: {exc}")
            raise cherrypy.HTTPError(507, f"the upload could not be started: {exc}") from None
        with database_errors(job_id):
            report_received(job_id, 0, length)
        logger.info("job %s: resumable upload of %d bytes created for %s", job_id, length, authed_user)
        cherrypy.response.status = 201
        cherrypy.response.headers["Location"] = cherrypy.url(f"/uploads/{job_id}")
        cherrypy.response.headers["Upload-Offset"] = "0"
        _expires_header(uploads, job_id)
        return {"job_id": job_id, "location": f"/uploads/{job_id}", "length": length}

    @staticmethod
    def HEAD(upload_id: Any = None, *_args: Any, **_kwargs: Any) -> bytes:
        """Tell how many bytes of the upload have arrived."""
        _require_version()
        uploads = store(current_runtime())
        upload = uploads.get(parse_job_id(upload_id))
        if upload is None:
            raise cherrypy.HTTPError(404, f"upload {upload_id} does not exist (finished, ended or expired)")
        headers = cherrypy.response.headers
        headers["Upload-Offset"] = str(uploads.offset(upload.job_id))
        headers["Upload-Length"] = str(upload.length)
        _expires_header(uploads, upload.job_id)
        return b""

    @staticmethod
    def PATCH(upload_id: Any = None, *_args: Any, **_kwargs: Any) -> bytes:
        """Append a chunk at ``Upload-Offset``; the last byte starts the job's stages."""
        _require_version()
        if cherrypy.request.headers.get("Content-Type", "").split(";")[0].strip() != OFFSET_CONTENT_TYPE:
            raise refuse_body(415, f"a PATCH body must be sent as Content-Type: {OFFSET_CONTENT_TYPE}")
        offset = _integer_header("Upload-Offset")
        declared = _integer_header("Content-Length", required=False)
        rt = current_runtime()
        uploads = store(rt)
        upload = uploads.get(parse_job_id(upload_id))
        if upload is None:
            raise refuse_body(404, f"upload {upload_id} does not exist (finished, ended or expired)")
        try:
            checksum = parse_checksum(cherrypy.request.headers.get("Upload-Checksum"))
            received = uploads.append(upload, offset, request_body(cherrypy.request.rfile), declared, checksum,
                                      rt.spool.block_size,
                                      lambda done: report_received(upload.job_id, done, upload.length))
        except TusError as exc:
            if exc.status == 507:
                logger.warning("job %s: %s", upload.job_id, exc)
            raise _http_error(exc) from None
        RECEIVED_BYTES.labels("tus").inc(max(0, received - offset))
        headers = cherrypy.response.headers
        headers["Upload-Offset"] = str(received)
        _expires_header(uploads, upload.job_id)
        cherrypy.response.status = 204
        if received < upload.length:
            with database_errors(upload.job_id):
                report_received(upload.job_id, received, upload.length)
            return b""
        _complete(uploads, upload)
        RECEIVED_BUNDLES.labels("tus").inc()
        return b""

    @staticmethod
    def DELETE(upload_id: Any = None, *_args: Any, **_kwargs: Any) -> bytes:
        """End an unfinished upload: its bytes are removed and its job fails."""
        _require_version()
        uploads = store(current_runtime())
        upload = uploads.get(parse_job_id(upload_id))
        if upload is None:
            raise cherrypy.HTTPError(404, f"upload {upload_id} does not exist (finished, ended or expired)")
        uploads.discard(upload.job_id)
        with database_errors(upload.job_id):
            models.update_state(upload.job_id, states.FAILED, states.UPLOADING, 0,
                             "the upload was ended by the client (tus termination)")
        cherrypy.response.status = 204
        return b""


def _complete(uploads: TusStore, upload) -> None:
    """Hand a whole upload to the pipeline, as ``/upload`` does with a body."""
    path = uploads.finish(upload)
    logger.info("job %s: resumable upload complete (%d bytes)", upload.job_id, upload.length)
    with database_errors(upload.job_id):
        models.update_state(upload.job_id, states.OK, states.UPLOADING, 100,
                         progress=(upload.length, upload.length, 0, 0))
    enqueue(make_context(upload.job_id, path, upload.user))


def expire_uploads(uploads: TusStore) -> list[int]:
    """Remove uploads that received nothing for longer than the expiry time; their jobs fail."""
    expired = uploads.expired()
    for job_id in expired:
        uploads.discard(job_id)
        models.update_state(job_id, states.FAILED, states.UPLOADING, 0,
                         f"the resumable upload expired: nothing arrived for {uploads.expiry / 3600:g} hours")
        logger.warning("job %s: resumable upload expired; its bytes were removed", job_id)
    return expired
