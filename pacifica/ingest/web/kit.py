"""What the web resources share: the runtime of the request's application, who the user is,
job ids, the database and broker turned into JSON errors, and creating and queueing a job.

Every answer is JSON, errors included; a traceback never reaches a client (it goes to the log).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tarfile
from collections.abc import Iterator
from typing import Any

import cherrypy
import peewee
from kombu.exceptions import OperationalError as BrokerError

from ...core.auth import web as auth_web
from ...core.auth.identity import Identity
from ...core.auth.web import current_identity, may_see
from ...core.database import discard as discard_connection
from ...core.web import refuse_body, refuse_body_later
from ..bundles import tar
from ..common.errors import PeerError
from ..db import models
from ..db.archived import Owner
from ..db.responses import create_state_response
from ..jobs import admission, callbacks, quotas, record
from ..jobs.runtime import Runtime
from ..jobs.stages import JobMessage, job_chain
from ..volume.body import Body, PeekedBody, read_head
from ..volume.spool import Spool

logger = logging.getLogger(__name__)


# Job ids are stored as 64-bit integers (BIGINT) by every database.
MAX_JOB_ID = 2**63 - 1


def current_runtime() -> Runtime:
    """The runtime of the application serving this request (set by ``rest.make_app``)."""
    return cherrypy.request.app.runtime


def get_remote_user() -> str:
    """The user the request acts for, as ``core.auth`` decided it before the handler ran: an API
    token, an OIDC token, the auth header from a trusted proxy (or from loopback while no identity
    source is configured), else ``default_user`` for a loopback client; otherwise 401 or 403."""
    return current_identity().user


def get_authed_user(func):
    """Decorator to pull out authed user."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, authed_user=current_identity("upload").user, **kwargs)

    return wrapper


def owners_apart() -> bool:
    """Whether jobs are kept to their owners: once any identity source is configured."""
    return auth_web.owners_apart(current_runtime().auth)


def visible_job(job_id: int, identity: Identity | None = None) -> models.IngestState:
    """The state row of ``job_id`` if this request may see it; 404 otherwise (also for a job of
    someone else, so that ids cannot be probed)."""
    identity = identity or current_identity("read")
    with database_errors(job_id):
        try:
            record = models.read_state(job_id)
        except models.IngestState.DoesNotExist:
            record = None
    if record is None or not may_see(record.submitter, identity, owners_apart()):
        raise cherrypy.HTTPError(404, f"job ID {job_id} does not exist.")
    return record


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
    if value > MAX_JOB_ID:
        raise cherrypy.HTTPError(400, f"job_id must be at most {MAX_JOB_ID} (a 64-bit integer)")
    return value


def flag(name: str, value: Any) -> bool:
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
            discard_connection(models.DB.obj)
        raise cherrypy.HTTPError(503, "the job database is unavailable; try again shortly") from None


def integer_header(name: str) -> int | None:
    """The non-negative integer in the request header ``name``, or None without one; 400 (the body
    unread) for anything else."""
    value = cherrypy.request.headers.get(name)
    if value is None:
        return None
    try:
        number = int(value)
        if number < 0:
            raise ValueError(value)
    except ValueError:
        raise refuse_body(400, f"{name} must be a non-negative integer, got {value[:40]!r}") from None
    return number


def required_integer_header(name: str) -> int:
    """``integer_header``, and 400 without one."""
    number = integer_header(name)
    if number is None:
        raise refuse_body(400, f"the {name} header is required")
    return number


def admit_upload(max_size: int, spool: Spool) -> int | None:
    """Check a body's declared size before reading it; return it (None when not declared).

    400 for a malformed or zero Content-Length, 413 above ``max_size`` (0: no limit), 507 when
    the volume has not that much room. Nothing is created for a refused body.
    """
    length = integer_header("Content-Length")
    if length is None:
        return None
    if length == 0:
        raise refuse_body(400, "the request body is empty: send the bundle (a tar) as the body")
    try:
        admission.bundle(length, max_size, spool, "body")
    except admission.Refused as exc:
        raise refuse_body(exc.status, str(exc)) from None
    return length


def bundle_body(body: Body) -> Body:
    """``body``, its first tar block read and looked at: 400 (nothing created, the rest of the body
    unread) when it cannot be a bundle, saying what it looks like and how to send one. A body
    with neither a length nor chunks is empty."""
    headers = cherrypy.request.headers
    if headers.get("Content-Type", "").lower().startswith("multipart/form-data"):
        raise refuse_body(415, "the body is a multipart form (curl -F sends one), not a tar; " + tar.SEND_HINT)
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    head = read_head(body, tarfile.BLOCKSIZE) if chunked or headers.get("Content-Length") else b""
    problem = tar.head_problem(head)
    if problem:
        raise refuse_body(400, problem)
    return PeekedBody(head, body)


def callback_url(params: dict[str, Any], body_unread: bool = False) -> str | None:
    """The completion callback URL of a request (header or query parameter); 400 if it is unusable."""
    url = cherrypy.request.headers.get(callbacks.HEADER) or params.get(callbacks.PARAMETER)
    if not url:
        return None
    problem = callbacks.check_url(str(url), current_runtime().settings.callback_hosts)
    if problem:
        raise refuse_body(400, problem) if body_unread else cherrypy.HTTPError(400, problem)
    return str(url)


# How many job ids are asked for before giving up when each one is already in use.
JOB_ID_ATTEMPTS = 10


def new_job(callback: str | None = None, submitter: str | None = None, size: int | None = None,
            project: str | None = None, instrument: str | None = None, uploading: bool = True) -> int:
    """Reserve a job id and record it as UPLOADING for ``submitter`` (with its completion callback, if any);
    503 if a peer or the database is down.

    The job is admitted under the quotas of its submitter (and of the ``project`` and
    ``instrument`` it names, if it does) for ``size`` bytes, in the transaction that records it:
    over a quota, nothing is recorded and the answer is 413, or 429 with ``Retry-After`` for a
    user with as many ``uploading`` jobs as their quota allows.
    """
    job_id = None
    owner = Owner(submitter, project, instrument)

    def admit(job: int) -> None:
        quotas.admit_job(job, owner, size, uploading=uploading)

    for _attempt in range(JOB_ID_ATTEMPTS):
        with database_errors():
            try:
                job_id = current_runtime().peers.uniqueid.reserve(1, "upload_job")
            except PeerError as exc:
                logger.error("cannot reserve a job id: %s", exc)
                raise cherrypy.HTTPError(503, f"cannot reserve a job id: {exc}") from None
            try:
                claimed = models.claim_job(job_id, submitter, admit)
            except quotas.QuotaRefused as exc:
                raise quota_refusal(exc) from None
            if claimed:
                break
            logger.warning("the uniqueid service handed out job id %s, which an existing job has; "
                           "asking for another", job_id)
    else:
        raise cherrypy.HTTPError(503, f"the uniqueid service handed out only job ids already in use "
                                      f"({JOB_ID_ATTEMPTS} tries, the last {job_id})")
    with database_errors(job_id):
        if callback:
            callbacks.register(job_id, callback)
    return job_id


def quota_refusal(exc: admission.Refused) -> cherrypy.HTTPError:
    """The answer to a refusal under a quota: its status and reason (and ``Retry-After``), the
    body left unread."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        return refuse_body_later(exc.status, str(exc), retry_after)
    return refuse_body(exc.status, str(exc))


def fail(job_id: int, message: str, received: int = 0, expected: int | None = None) -> None:
    """Record that job ``job_id``'s upload failed, with the bytes that had arrived (of ``expected``)."""
    try:
        record.upload_failed(job_id, message, received, expected)
    except peewee.PeeweeException:
        logger.exception("job %s: could not record FAILED: %s", job_id, message)
        with contextlib.suppress(peewee.PeeweeException):
            discard_connection(models.DB.obj)


def enqueue(ctx: JobMessage) -> dict[str, Any]:
    """Start a job's chain; on a broker failure mark the job FAILED and answer 503."""
    job_id = ctx["job_id"]
    # The answer is the job as accepted: a fast worker may move it on before we could read it back.
    with database_errors(job_id):
        accepted = create_state_response(models.read_state(job_id))
    try:
        current_runtime().spool.write_job(job_id, ctx)
        job_chain(ctx).apply_async()
    except (BrokerError, OSError) as exc:
        logger.error("job %s: cannot queue: %s", job_id, exc)
        fail(job_id, f"could not queue the job: the message broker is unavailable ({exc})")
        raise cherrypy.HTTPError(503, "the message broker is unavailable; the job was not queued") from None
    return accepted


