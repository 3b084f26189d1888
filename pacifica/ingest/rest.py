"""The HTTP resources: ``/``, ``/upload`` (also ``/ingest``), ``/move`` and ``/get_state``.

Handlers only receive and enqueue: they reserve a job id, record UPLOADING, spool the body
to the volume in ``transfer_size`` reads and start the job's chain of stages. Every answer is
JSON, errors included; a traceback never reaches a client (it goes to the log).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterator
from typing import Any

import cherrypy
import peewee

from ..core import web
from ..core.database import discard as discard_connection
from ..core.database import release as release_connection
from ..core.web import error_page_default, unexpected_error  # noqa: F401 - published names
from . import orm, states
from .bootstrap import runtime
from .errors import PeerError, UploadError
from .httpbody import request_body
from .utils import create_state_response, event_response

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


def get_remote_user() -> str:
    """Get the remote user from cherrypy request headers.

    The auth header counts only from a configured trusted proxy (from anyone when none is
    configured, as the published service did); without it the ``default_user`` is used, and
    when that is empty the request is refused with 401.
    """
    settings = runtime().settings
    user = cherrypy.request.headers.get(settings.auth_header)
    if user and settings.trusted_proxies and not _from_trusted_proxy(settings.trusted_proxies):
        logger.warning("ignoring %s from %s: not a trusted proxy", settings.auth_header, cherrypy.request.remote.ip)
        user = None
    if user:
        return user
    if settings.default_user:
        return settings.default_user
    raise _refuse_body(401, f"authentication required: no {settings.auth_header} header from a trusted proxy")


def _from_trusted_proxy(networks: tuple[str, ...]) -> bool:
    import ipaddress

    try:
        address = ipaddress.ip_address(cherrypy.request.remote.ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def get_authed_user(func):
    """Decorator to pull out authed user."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, authed_user=get_remote_user(), **kwargs)

    return wrapper


def parse_job_id(job_id: Any) -> int:
    """Return ``job_id`` as a non-negative integer or answer 400."""
    if job_id is None or job_id == "":
        raise cherrypy.HTTPError(400, "job_id is required")
    try:
        value = int(job_id)
    except (TypeError, ValueError):
        raise cherrypy.HTTPError(400, f"job_id must be an integer, got {str(job_id)[:64]!r}") from None
    if value < 0:
        raise cherrypy.HTTPError(400, "job_id must not be negative")
    return value


def _flag(name: str, value: Any) -> bool:
    """A boolean query parameter: absent, ``false``/``0``/``no`` or ``true``/``1``/``yes``."""
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise cherrypy.HTTPError(400, f"{name} must be true or false, got {str(value)[:40]!r}")


@contextlib.contextmanager
def database_errors(job_id: int | None = None) -> Iterator[None]:
    """Turn a database failure into a 503 JSON answer, dropping the broken connection so that
    the next request connects again."""
    try:
        yield
    except peewee.PeeweeException as exc:
        logger.error("job %s: database unavailable: %s", job_id, exc)
        with contextlib.suppress(peewee.PeeweeException):
            discard_connection(orm.DB.obj)
        raise cherrypy.HTTPError(503, "the job database is unavailable; try again shortly") from None


def _refuse_body(status: int, message: str) -> cherrypy.HTTPError:
    """An error for a request whose body we will not read, answered at once.

    cheroot reads and discards an unread body before answering (except for 413), which for a
    multi-gigabyte upload means the refusal arrives only after the whole body. Marking the body
    as consumed skips that, and ``Connection: close`` tells the client not to reuse the socket.
    """
    cherrypy.response.headers["Connection"] = "close"
    if hasattr(cherrypy.request.rfile, "remaining"):
        cherrypy.request.rfile.remaining = 0
    return cherrypy.HTTPError(status, message)


def _admit_upload(max_size: int, spool) -> int | None:
    """Check a body's declared size before reading it; return it (None when not declared).

    400 for a malformed or zero Content-Length, 413 above ``max_size`` (0: no limit), 507 when
    the volume has not that much room. Nothing is created for a refused body.
    """
    header = cherrypy.request.headers.get("Content-Length")
    if header is None:
        return None
    try:
        length = int(header)
        if length < 0:
            raise ValueError(header)
    except ValueError:
        raise _refuse_body(400, f"Content-Length must be a non-negative integer, got {header[:40]!r}") from None
    if length == 0:
        raise _refuse_body(400, "the request body is empty: send the bundle (a tar) as the body")
    if max_size and length > max_size:
        raise _refuse_body(413, f"the body of {length} bytes is larger than the {max_size} byte limit")
    free = spool.free_space()
    if length > free:
        raise _refuse_body(507, f"the volume has {free} bytes free, the body needs {length}")
    return length


def _callback_url(params: dict[str, Any], refuse_body: bool = False) -> str | None:
    """The completion callback URL of a request (header or query parameter); 400 if it is unusable."""
    from . import callbacks

    url = cherrypy.request.headers.get(callbacks.HEADER) or params.get(callbacks.PARAMETER)
    if not url:
        return None
    problem = callbacks.check_url(str(url))
    if problem:
        raise _refuse_body(400, problem) if refuse_body else cherrypy.HTTPError(400, problem)
    return str(url)


# How many job ids are asked for before giving up when each one is already in use.
JOB_ID_ATTEMPTS = 10


def _new_job(callback: str | None = None) -> int:
    """Reserve a job id and record it as UPLOADING (with its completion callback, if any);
    503 if a peer or the database is down."""
    job_id = None
    for _attempt in range(JOB_ID_ATTEMPTS):
        with database_errors():
            try:
                job_id = runtime().peers.uniqueid.reserve(1, "upload_job")
            except PeerError as exc:
                logger.error("cannot reserve a job id: %s", exc)
                raise cherrypy.HTTPError(503, f"cannot reserve a job id: {exc}") from None
            if orm.claim_job(job_id):
                break
            logger.warning("the uniqueid service handed out job id %s, which an existing job has; "
                           "asking for another", job_id)
    else:
        raise cherrypy.HTTPError(503, f"the uniqueid service handed out only job ids already in use "
                                      f"({JOB_ID_ATTEMPTS} tries, the last {job_id})")
    with database_errors(job_id):
        if callback:
            from . import callbacks

            callbacks.register(job_id, callback)
    return job_id


def _fail(job_id: int, message: str) -> None:
    try:
        orm.update_state(job_id, states.FAILED, states.UPLOADING, 0, message)
    except peewee.PeeweeException:
        logger.exception("job %s: could not record FAILED: %s", job_id, message)
        with contextlib.suppress(peewee.PeeweeException):
            discard_connection(orm.DB.obj)


def _enqueue(ctx: dict[str, Any]) -> dict[str, Any]:
    """Start a job's chain; on a broker failure mark the job FAILED and answer 503."""
    from kombu.exceptions import OperationalError as BrokerError

    from .tasks import job_chain

    job_id = ctx["job_id"]
    # The answer is the job as accepted: a fast worker may move it on before we could read it back.
    with database_errors(job_id):
        accepted = create_state_response(orm.read_state(job_id))
    try:
        runtime().spool.write_job(job_id, ctx)
        job_chain(ctx).apply_async()
    except (BrokerError, OSError) as exc:
        logger.error("job %s: cannot queue: %s", job_id, exc)
        _fail(job_id, f"could not queue the job: the message broker is unavailable ({exc})")
        raise cherrypy.HTTPError(503, "the message broker is unavailable; the job was not queued") from None
    return accepted


class RestIngestState:
    """``GET /get_state?job_id=N``: the state of a job."""

    exposed = True

    @staticmethod
    @cherrypy.tools.json_out()
    def GET(job_id: Any = None, history: Any = None, **_ignored: Any) -> dict[str, Any]:
        """Get the ingest state for the job; with ``history=true`` also every change it went through."""
        job = parse_job_id(job_id)
        with_history = _flag("history", history)
        with database_errors(job):
            try:
                record = orm.read_state(job)
            except orm.IngestState.DoesNotExist:
                raise cherrypy.HTTPError(404, f"job ID {job} does not exist.") from None
            answer = create_state_response(record)
            if with_history:
                answer["history"] = [event_response(event) for event in orm.read_history(job)]
        return answer


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
        from .tasks import make_context

        rt = runtime()
        callback = _callback_url(kwargs, refuse_body=True)
        length = _admit_upload(rt.settings.max_upload_size, rt.spool)
        job_id = _new_job(callback)
        try:
            size = rt.spool.receive(job_id, request_body(cherrypy.request.rfile), expected=length,
                                    limit=rt.settings.max_upload_size)
        except UploadError as exc:
            logger.warning("job %s: upload refused: %s", job_id, exc)
            _fail(job_id, str(exc))
            raise _refuse_body(exc.status, str(exc)) from None
        logger.info("job %s: received %d bytes from %s", job_id, size, authed_user)
        return _enqueue(make_context(job_id, rt.spool.bundle_path(job_id), authed_user))


class RestMove:
    """``POST /move``: a JSON metadata document whose Files objects name a ``source`` path."""

    exposed = True
    _cp_config = {"request.process_request_body": False}

    @staticmethod
    @cherrypy.tools.json_out()
    @get_authed_user
    def POST(*_args: Any, authed_user: str, **kwargs: Any) -> dict[str, Any]:
        """Store the move document and start its move."""
        from .tasks import make_context

        callback = _callback_url(kwargs, refuse_body=True)
        document = _json_body(MOVE_DOCUMENT_LIMIT, "move document")
        rt = runtime()
        job_id = _new_job(callback)
        path = rt.spool.write_move(job_id, document)
        return _enqueue(make_context(job_id, path, authed_user, move=True))


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
        from . import validate

        body = _json_body(VALIDATE_DOCUMENT_LIMIT, "metadata document")
        try:
            found = validate.problems(body, authed_user, runtime().peers.policy)
        except PeerError as exc:
            raise cherrypy.HTTPError(503, f"the policy service could not be asked: {exc}") from None
        if found:
            cherrypy.response.status = 422
        return {"valid": not found, "problems": found}


def _json_body(limit: int, what: str) -> Any:
    """The request body decoded as JSON; 413 above ``limit`` bytes, 400 if it is not JSON."""
    raw = cherrypy.request.rfile.read(limit + 1)
    if len(raw) > limit:
        raise _refuse_body(413, f"{what} larger than {limit} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise cherrypy.HTTPError(400, f"body is not valid JSON: {exc}") from None


class Root:
    """``GET /``: tells the service is up; the other resources hang below it."""

    exposed = True
    get_state = RestIngestState()
    upload = RestUpload()
    ingest = upload
    move = RestMove()
    validate = RestValidate()

    @staticmethod
    @cherrypy.tools.json_out()
    def GET() -> dict[str, str]:
        """Return happy message about functioning service."""
        return {"message": "Pacifica Ingest Up and Running"}


def _release_connection() -> None:
    """After the answer is sent, the request thread's database connection goes back to the pool."""
    with contextlib.suppress(peewee.PeeweeException):
        release_connection(orm.DB.obj)


cherrypy.tools.release_connection = cherrypy.Tool("on_end_request", _release_connection)


def app_config() -> dict[str, dict[str, Any]]:
    """Return the application config every deployment gets (a CherryPy config file may add to it)."""
    return web.app_config("release_connection")


def make_app(cp_config: str | None = None) -> cherrypy.Application:
    """Build the CherryPy application; ``cp_config`` is an optional CherryPy config file."""
    from .tus_rest import RestUploads

    root = Root()
    root.uploads = RestUploads()
    app = cherrypy.Application(root, "", config=app_config())
    if cp_config:
        app.merge(cp_config)
    return app
