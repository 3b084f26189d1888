"""Completion callbacks: one POST of a job's final state to the URL its uploader gave.

The URL comes with the upload (``X-Pacifica-Callback`` header or ``callback_url`` query
parameter) and is kept in the ``ingestcallback`` table. When the job completes or fails,
``schedule`` queues the ``deliver`` task; the pipeline never waits for the receiver. Delivery
claims the row first, so however often it is queued the receiver gets one POST; a receiver that
is down or answers an error is tried again with exponential backoff, up to ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from ...core.outbound import OutboundRefused, post_checked, resolve_checked
from ...core.redact import redact_url
from ..db import archived, models
from ..db.responses import create_state_response
from .celery_app import INGEST_APP, IngestTask

logger = logging.getLogger(__name__)

HEADER = "X-Pacifica-Callback"
PARAMETER = "callback_url"
MAX_ATTEMPTS = 6
MAX_DELAY = 600.0
URL_LIMIT = 2048

WAITING, SENDING, DELIVERED, GAVE_UP = "waiting", "sending", "delivered", "gave up"


def check_url(url: str, allowed: tuple[str, ...] = ()) -> str | None:
    """Return what is wrong with a callback URL, or None when it can be used (``allowed``: the
    operator's ``callback_hosts``)."""
    try:
        resolve_checked(url, allowed)
    except OutboundRefused as exc:
        return str(exc)
    return None


def register(job_id: int, url: str) -> None:
    """Remember that ``job_id`` reports its end to ``url``."""
    with models.DB.atomic():
        models.IngestCallback.delete().where(models.IngestCallback.job_id == int(job_id)).execute()
        models.IngestCallback.insert(job_id=int(job_id), url=url, status=WAITING).execute()


def schedule(job_id: int) -> None:
    """Queue the delivery of a finished job's callback, if it has one still to deliver.

    Called after every change that completes a job; never raises (the job's end is recorded
    whatever happens to its callback).
    """
    try:
        waiting = (models.IngestCallback.select(models.IngestCallback.job_id)
                   .where((models.IngestCallback.job_id == int(job_id)) & (models.IngestCallback.status == WAITING))
                   .exists())
        if waiting:
            deliver_callback.apply_async((int(job_id),))
    except Exception:
        logger.exception("job %s: could not queue its completion callback", job_id)


def redeliver(job_id: int) -> None:
    """Send a job's callback again (a fixity audit found one of its files failing): its body
    then carries the failures. Never raises."""
    try:
        reset = (models.IngestCallback.update(status=WAITING, attempts=0, last_error="")
                 .where(models.IngestCallback.job_id == int(job_id)).execute())
        if reset:
            deliver_callback.apply_async((int(job_id),))
    except Exception:
        logger.exception("job %s: could not queue its callback after a fixity failure", job_id)


def body(job_id: int) -> dict[str, Any]:
    """What a callback POSTs: the job's state as ``GET /get_state`` answers it, and, once an audit
    found files of the job failing, ``fixity`` with them (their last outcome)."""
    state = create_state_response(models.read_state(job_id))
    failing = archived.failing_files(job_id)
    if failing:
        state["fixity"] = {"outcome": archived.FAILED, "failures": failing}
    return state


def claim(job_id: int) -> models.IngestCallback | None:
    """Take the job's callback for one delivery attempt; None if another has it or it is done."""
    claimed = (models.IngestCallback.update(status=SENDING, attempts=models.IngestCallback.attempts + 1)
               .where((models.IngestCallback.job_id == int(job_id)) & (models.IngestCallback.status == WAITING))
               .execute())
    return models.IngestCallback.get_by_id(int(job_id)) if claimed else None


def attempt(job_id: int, allowed: tuple[str, ...], timeout: float, base_delay: float) -> float | None:
    """Try to deliver once; return the seconds to wait before the next try, or None when there
    is nothing more to do (delivered, given up, or not this caller's to deliver).

    The body is the job's state as ``GET /get_state`` answers it.
    """
    callback = claim(job_id)
    if callback is None:
        return None
    state = body(job_id)
    where = redact_url(callback.url)
    permanent = False
    try:
        response = post_checked(callback.url, allowed, timeout, json=state)
        if 200 <= response.status_code < 300:
            _finish(job_id, DELIVERED, "")
            logger.info("job %s: callback delivered to %s", job_id, where)
            return None
        # A redirect is not followed and a refusal will not change: neither is tried again.
        permanent = response.status_code < 500
        error = f"HTTP {response.status_code}" + (" (redirects are not followed)" if 300 <= response.status_code < 400
                                                   else "")
    except OutboundRefused as exc:
        permanent, error = True, str(exc)
    except requests.RequestException as exc:
        error = exc.__class__.__name__
    if permanent or callback.attempts >= MAX_ATTEMPTS:
        _finish(job_id, GAVE_UP, error)
        logger.warning("job %s: callback to %s given up after %d attempts: %s", job_id, where,
                       callback.attempts, error)
        return None
    _finish(job_id, WAITING, error)
    logger.info("job %s: callback to %s failed (attempt %d): %s", job_id, where, callback.attempts, error)
    return delay(callback.attempts, base_delay)


def delay(attempts: int, base: float) -> float:
    """Seconds before try number ``attempts + 1``: ``base`` doubled each time, at most ``MAX_DELAY``."""
    return min(MAX_DELAY, max(base, 0.1) * 2 ** (attempts - 1))


def _finish(job_id: int, status: str, error: str) -> None:
    fields: dict[Any, Any] = {models.IngestCallback.status: status, models.IngestCallback.last_error: error}
    if status == DELIVERED:
        fields[models.IngestCallback.delivered] = models.utcnow()
    models.IngestCallback.update(fields).where(models.IngestCallback.job_id == int(job_id)).execute()


@INGEST_APP.task(name="pacifica.ingest.deliver_callback", base=IngestTask, bind=True, max_retries=None)
def deliver_callback(self: IngestTask, job_id: int) -> None:
    """POST a finished job's state to its callback URL; try again later if the receiver failed."""
    settings = self.runtime.settings
    wait = attempt(job_id, settings.callback_hosts, min(settings.http_timeout or 30, 30), settings.retry_delay)
    if wait is not None:
        raise self.retry(countdown=wait)
