"""The one writer of a job's state: every change to a job's row goes through here
(``models.update_state`` is called nowhere else), so the rules of what a client sees live in one
place.

- A bundle arriving (``received``, ``upload_whole``, ``upload_failed``): UPLOADING, the percent
  of bytes below 100 until the bundle is whole.
- A stage (``stage``, ``reporter``): 0 % when it starts, the byte and file counts while it
  runs (below 100 % until it ends), 100 % when it ends, and a readable message when it fails or
  will be tried again.
- An operator (``by_operator``): any change, recorded in the job's history with who made it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from ..common import states
from ..common.errors import IngestError, PeerUnavailable
from ..common.metrics import STAGE_SECONDS
from ..db import models

logger = logging.getLogger(__name__)

Reporter = Callable[..., None]


@contextlib.contextmanager
def stage(job_id: int, task: str, will_retry: bool = False) -> Iterator[None]:
    """Record ``task`` of ``job_id`` as started, then finished or FAILED with the error's message.

    With ``will_retry``, a transient peer failure leaves the job OK with a note that the stage
    will be tried again (the caller schedules the retry) instead of failing it.
    """
    models.update_state(job_id, states.OK, task, 0)
    started = time.monotonic()
    outcome = "failed"
    fields = {"job_id": job_id, "stage": task}
    try:
        yield
        outcome = "ok"
    except PeerUnavailable as exc:
        if not will_retry:
            logger.warning("job %s failed in %r: %s", job_id, task, exc, extra=fields)
            models.update_state(job_id, states.FAILED, task, 0, str(exc))
            raise
        logger.warning("job %s: %r will be retried: %s", job_id, task, exc, extra=fields)
        models.update_state(job_id, states.OK, task, 0, f"will retry: {exc}")
        outcome = "retry"
        raise
    except IngestError as exc:
        logger.warning("job %s failed in %r: %s", job_id, task, exc, extra=fields)
        models.update_state(job_id, states.FAILED, task, 0, str(exc))
        raise
    except Exception as exc:
        logger.exception("job %s: unexpected error in %r", job_id, task, extra=fields)
        models.update_state(job_id, states.FAILED, task, 0, f"internal error: {exc.__class__.__name__}: {exc}")
        raise
    finally:
        duration = time.monotonic() - started
        STAGE_SECONDS.labels(task, outcome).observe(duration)
        logger.info("job %s: %r %s in %.3f s", job_id, task, outcome, duration,
                    extra={**fields, "duration": round(duration, 6)})
    models.update_state(job_id, states.OK, task, 100)


def ended(job_id: int) -> bool:
    """True when the job has ended (completed, or FAILED): no stage may run for it any more."""
    try:
        return bool(models.read_state(job_id).complete)
    except models.IngestState.DoesNotExist:
        return False


def reporter(job_id: int, task: str, interval: float = 0.5) -> Reporter:
    """Return ``report(done, total, files_done, files_total, final=False)``, which records the
    stage's progress at most every ``interval`` seconds (and always when ``final``): the percent of
    bytes done, below 100 until the stage ends, and the byte and file counts."""
    last = time.monotonic()

    def report(done: int, total: int, files_done: int, files_total: int, final: bool = False) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval or final:
            last = now
            percent = min(99.9, round(100.0 * done / total, 1)) if total else 0
            models.update_state(job_id, states.OK, task, percent, progress=(done, total, files_done, files_total),
                                event=False)

    return report


def received(job_id: int, done: int, total: int | None) -> None:
    """How much of a job's bundle has arrived (UPLOADING, the percent of bytes, below 100)."""
    percent = min(99.9, round(100.0 * done / total, 1)) if total else 0
    models.update_state(job_id, states.OK, states.UPLOADING, percent, progress=(done, total or 0, 0, 0),
                        event=False)


def upload_whole(job_id: int, size: int) -> None:
    """The whole bundle of ``size`` bytes is on the volume (UPLOADING at 100 %), about to be queued."""
    models.update_state(job_id, states.OK, states.UPLOADING, 100, progress=(size, size, 0, 0))


def upload_failed(job_id: int, reason: str, received: int = 0, expected: int | None = None) -> None:
    """FAILED in UPLOADING: the bundle never arrived whole, or could not be queued. The bytes
    that had arrived (of those ``expected``) stay in its progress, for the jobs page."""
    progress = (received, expected or 0, 0, 0) if received else None
    models.update_state(job_id, states.FAILED, states.UPLOADING, 0, reason, progress=progress)


def by_operator(job_id: int, state: str, task: str, percent: float, *, operator: str, note: str | None = None,
                exception: str = "", complete: bool | None = None) -> None:
    """An operator's change to a job, recorded in its history with the operator and ``note``."""
    models.update_state(job_id, state, task, percent, exception, complete=complete, operator=operator, note=note)


def fail_unscheduled_retry(job_id: int, error: Exception, scheduling: Exception) -> None:
    """FAILED in the stage the job is in: it was to be retried, but the retry could not be queued."""
    task = models.read_state(job_id).task
    models.update_state(job_id, states.FAILED, task, 0, f"{error}; the retry could not be queued: {scheduling}")
