"""The HTTP resources: ``/``, ``/upload`` (also ``/ingest``), ``/move`` and ``/get_state``.

Handlers only receive and enqueue: they reserve a job id, record UPLOADING, spool the body
to the volume in ``transfer_size`` reads and start the job's chain of stages. Every answer is
JSON, errors included; a traceback never reaches a client (it goes to the log).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import cherrypy
import peewee

from ...core import web
from ...core.database import release as release_connection
from ...core.health import HealthResource, ReadyResource
from ...core.openapi import OpenApiResource
from ...core.web import error_page_default, unexpected_error  # noqa: F401 - published names
from ..common.errors import PeerError, UploadError
from ..common.metrics import RECEIVED_BUNDLES, RECEIVED_BYTES
from ..db import archived, models
from ..db import quotas as quota_holds
from ..db.responses import create_state_response, event_response
from ..jobs import quotas, validate
from ..jobs.runtime import Runtime
from ..jobs.stages import make_context
from ..volume.body import request_body
from .jobs_page import JobsPage
from .kit import (  # noqa: F401 - get_remote_user and get_authed_user are published names here
    admit_upload,
    bundle_body,
    callback_url,
    current_runtime,
    database_errors,
    enqueue,
    fail,
    flag,
    get_authed_user,
    get_remote_user,
    new_job,
    parse_job_id,
    visible_job,
)
from .openapi import openapi
from .ops import Metrics, readiness_checks
from .uploads import RestUploads

logger = logging.getLogger(__name__)

# Server-wide settings a bundle upload needs: no body size cap (CherryPy's default is 100 MB)
# and a socket timeout that tolerates a slow uploader (the default is 10 s).
SERVER_DEFAULTS = {
    "server.max_request_body_size": 0,
    "server.socket_timeout": 300,
    "server.thread_pool": 32,
    # cheroot keeps only 10 idle keep-alive connections by default and drops the others, which
    # a busy client pool sees as "connection closed without response".
    "server.keep_alive_conn_limit": 512,
    # Connections waiting to be accepted (CherryPy's default backlog is 5).
    "server.socket_queue_size": 128,
    "engine.autoreload.on": False,
    "log.screen": True,
}

MOVE_DOCUMENT_LIMIT = 64 * 1024 * 1024


class RestIngestState:
    """``GET /get_state?job_id=N``: the state of a job."""

    exposed = True

    @staticmethod
    @cherrypy.tools.json_out()
    def GET(job_id: Any = None, history: Any = None, files: Any = None, files_after: Any = None,
            verify: Any = None, **_ignored: Any) -> dict[str, Any]:
        """Get the ingest state for the job; with ``history=true`` also every change it went through;
        with ``files=true`` the files the service archived for it, each with the digest it
        recorded (``FILES_PAGE`` at a time, after the file id ``files_after``), and with
        ``verify=true`` the size the archive holds for each now (503 if it cannot be asked)."""
        job = parse_job_id(job_id)
        with_history = flag("history", history)
        with_files = flag("files", files)
        with_verify = flag("verify", verify)
        after = parse_job_id(files_after) if files_after not in (None, "") else -1
        record = visible_job(job)
        with database_errors(job):
            answer = create_state_response(record)
            if with_history:
                answer["history"] = [event_response(event) for event in models.read_history(job)]
            if with_files:
                rows = archived.due(job_id=job, after_file=after, limit=FILES_PAGE)
                answer["files"] = [{"file_id": row.file_id, "path": row.name, "size": row.size,
                                    "hashtype": row.hashtype, "hashsum": row.hashsum, "outcome": row.outcome}
                                   for row in rows]
                answer["files_more"] = len(rows) == FILES_PAGE
        if with_files and with_verify:
            archive = current_runtime().peers.archive
            try:
                for item in answer["files"]:
                    item["stored_size"] = archive.stored_size(item["file_id"])
            except PeerError as exc:
                # The archive's own words may name its paths on disk: they go to the log only.
                logger.warning("job %s: the archive could not be asked what it holds: %s", job, exc)
                raise cherrypy.HTTPError(503, "the archive could not be asked what it holds; try again later") from None
        return answer


# Files ``get_state?files=true`` answers at a time.
FILES_PAGE = 1000


class RestUpload:
    """``POST /upload`` (and ``/ingest``): a tar bundle as the request body."""

    exposed = True
    # The body is a tar whatever Content-Type the client sends: never let CherryPy parse it.
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def POST(*_args: Any, authed_user: str, **kwargs: Any) -> dict[str, Any]:
        """Spool the bundle and start its ingest."""
        rt = current_runtime()
        callback = callback_url(kwargs, body_unread=True)
        length = admit_upload(rt.settings.max_upload_size, rt.spool)
        # What is plainly not a bundle (nothing, a form, a compressed or other file) is refused
        # on its first block, before a job exists for it.
        body = bundle_body(request_body(cherrypy.request.rfile))
        job_id = new_job(callback, authed_user, size=length)
        try:
            size = rt.spool.receive(job_id, body, expected=length,
                                    limit=rt.settings.max_upload_size, stage_members=rt.stages_members())
        except UploadError as exc:
            logger.warning("job %s: upload refused: %s", job_id, exc)
            fail(job_id, str(exc), exc.received, exc.expected)
            raise web.refuse_body(exc.status, str(exc)) from None
        logger.info("job %s: received %d bytes from %s", job_id, size, authed_user)
        RECEIVED_BYTES.labels("upload").inc(size)
        RECEIVED_BUNDLES.labels("upload").inc()
        return enqueue(make_context(job_id, rt.spool.bundle_path(job_id), authed_user))


class RestMove:
    """``POST /move``: a JSON metadata document whose Files objects name a ``source`` path."""

    exposed = True
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def POST(*_args: Any, authed_user: str, **kwargs: Any) -> dict[str, Any]:
        """Store the move document and start its move."""
        rt = current_runtime()
        if not rt.settings.move_roots:
            raise web.refuse_body(403, "POST /move is off: it takes files from this server's own disk, so an operator "
                                   "must name the directories it may take them from ([ingest] move_roots, "
                                   "INGEST_MOVE_ROOTS)")
        callback = callback_url(kwargs, body_unread=True)
        document, _shape = web.spooled_json(MOVE_DOCUMENT_LIMIT, "move document", rt.spool.volume_path)
        with document:
            job_id = new_job(callback, authed_user)
            path = rt.spool.write_move(job_id, document)
        RECEIVED_BUNDLES.labels("move").inc()
        return enqueue(make_context(job_id, path, authed_user, move=True))


VALIDATE_DOCUMENT_LIMIT = MOVE_DOCUMENT_LIMIT


class RestValidate:
    """``POST /validate``: every problem a bundle's metadata would meet, without creating a job."""

    exposed = True
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def POST(*_args: Any, authed_user: str, **_kwargs: Any) -> dict[str, Any]:
        """Check a metadata document (and optionally the member list) for the user; 200 when
        it would be accepted, 422 listing every problem otherwise."""
        rt = current_runtime()
        body, shape = web.spooled_json(VALIDATE_DOCUMENT_LIMIT, "metadata document", rt.spool.volume_path)
        with body:
            try:
                found = validate.problems(body, shape, authed_user, rt.peers.policy, rt.spool.volume_path)
            except PeerError as exc:
                raise cherrypy.HTTPError(503, f"the policy service could not be asked: {exc}") from None
        if found:
            cherrypy.response.status = 422
        # The first problems and how many more: a document can have hundreds of thousands.
        return {"valid": not found, "problems": found.listed()}


class RestQuota:
    """``GET /quota``: the caller's quotas, each with its limits and what counts against it."""

    exposed = True

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def GET(*_args: Any, authed_user: str, **_ignored: Any) -> dict[str, Any]:
        """Limits and usage of the caller's user, and of each project and instrument they archived
        (or are uploading) files of."""
        with database_errors():
            names = [(quota_holds.USER, authed_user), *quota_holds.projects_and_instruments_of(authed_user)]
            return {"user": authed_user, "quotas": quotas.report(names)}


class Root:
    """``GET /``: tells the service is up; the other resources hang below it."""

    exposed = True
    get_state = RestIngestState()
    upload = RestUpload()
    ingest = upload
    move = RestMove()
    validate = RestValidate()
    quota = RestQuota()
    # Mounted by make_app: they need the service's runtime or registries built at start-up.
    uploads: RestUploads
    metrics: Metrics
    health: HealthResource
    ready: ReadyResource
    openapi_json: OpenApiResource
    jobs: JobsPage

    @staticmethod
    @cherrypy.tools.json_out()
    def GET() -> dict[str, str]:
        """Return happy message about functioning service."""
        return {"message": "Pacifica Ingest Up and Running"}


def _release_connection() -> None:
    """After the answer is sent, the request thread's database connection goes back to the pool."""
    with contextlib.suppress(peewee.PeeweeException):
        release_connection(models.DB.obj)


cherrypy.tools.release_connection = cherrypy.Tool("on_end_request", _release_connection)


def app_config() -> dict[str, dict[str, Any]]:
    """Return the application config every deployment gets (a CherryPy config file may add to it)."""
    return web.app_config("release_connection")


def make_app(runtime: Runtime, cp_config: str | None = None) -> cherrypy.Application:
    """Build the CherryPy application serving ``runtime``; ``cp_config`` is an optional CherryPy
    config file. Handlers reach the runtime through their application (``current_runtime``)."""
    root = Root()
    root.uploads = RestUploads()
    root.metrics, root.health, root.ready = Metrics(), HealthResource(), ReadyResource(readiness_checks)
    root.openapi_json = OpenApiResource(openapi)
    root.jobs = JobsPage()
    app = cherrypy.Application(root, "", config=app_config())
    app.runtime = runtime
    if cp_config:
        app.merge(cp_config)
    return app
