"""What an operator may do to a job, from the jobs page or from ``pacifica-ingest-cmd``: fail an
unfinished job, retry a failed one from its failed stage, set a job's state by hand, or run a
bundle's stages again in this process. Each is recorded in the job's history (``record``) with
who did it and from where, and logged.
"""

from __future__ import annotations

import logging

from ..common import states
from ..common.errors import IngestError
from ..db import models
from ..volume.spool import Spool
from . import record
from .stages import job_chain, make_context, run_job

logger = logging.getLogger(__name__)


class ActionRefused(IngestError):
    """The action does not apply to the job as it is; ``status`` is the HTTP status that says why
    (404: no such job; 409: not in a state the action applies to)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def audit_line(operator: str, action: str) -> str:
    """The line that records an operator's action in a job's history."""
    return f"[{models.utcnow():%Y-%m-%d %H:%M:%S} UTC] {operator} {action}"


def _job(job_id: int) -> models.IngestState:
    try:
        return models.read_state(job_id)
    except models.IngestState.DoesNotExist:
        raise ActionRefused(f"job {job_id} does not exist", 404) from None


def fail(job_id: int, operator: str, where: str) -> None:
    """Fail an unfinished job in the stage it is in."""
    row = _job(job_id)
    if row.complete:
        raise ActionRefused(f"job {job_id} has already ended ({row.state})", 409)
    record.by_operator(job_id, states.FAILED, row.task, 0, exception=f"failed by {operator} from {where}",
                       operator=operator)
    logger.warning("job %s: failed by operator %s from %s", job_id, operator, where)


def retry(job_id: int, operator: str, where: str, spool: Spool) -> None:
    """Queue a failed job again from the stage it failed in (its bundle must still be on the volume)."""
    row = _job(job_id)
    if row.state != states.FAILED:
        raise ActionRefused(f"job {job_id} is {row.state}: only a FAILED job can be retried", 409)
    ctx = spool.read_job(job_id)
    if ctx is None:
        raise ActionRefused(f"job {job_id}'s bundle is no longer on the volume; send it again", 409)
    record.by_operator(job_id, states.OK, row.task, 0, operator=operator,
                       note=f"retried by {operator} from {where}")
    job_chain(ctx, from_task=row.task).apply_async()
    logger.warning("job %s: retried by operator %s from %s", job_id, operator, where)


def set_state(job_id: int, operator: str, state: str | None = None, task: str | None = None,
              percent: float | None = None, exception: str | None = None) -> str | None:
    """Set a job's state by hand (a job that does not exist is made, given ``state`` and
    ``task``); what is not given stays as it is. Return the line recorded, or None when the
    job is already so: then nothing is written (no history, no new time of change)."""
    exists = True
    try:
        current = models.read_state(job_id)
        was = (current.state, current.task, float(current.task_percent), current.exception)
    except models.IngestState.DoesNotExist:
        if state is None or task is None:
            raise ActionRefused(f"job {job_id} does not exist (give --state and --task to create it)", 404) from None
        was = (state, task, 0.0, "")
        exists = False
    if percent is not None and not 0 <= percent <= 100:
        raise ActionRefused("--task-percent must be between 0 and 100", 400)
    state = state if state is not None else was[0]
    task = task if task is not None else was[1]
    percent = percent if percent is not None else was[2]
    exception = exception if exception is not None else was[3]
    if exists and (state, task, float(percent), exception) == was:
        return None
    note = audit_line(operator, f"set the job to {state} {task!r} {float(percent)}% with pacifica-ingest-cmd job")
    record.by_operator(job_id, state, task, percent, exception=exception, operator=operator, note=note)
    logger.warning("job %s: %s", job_id, note)
    return note


def rerun(job_id: int, path: str, user: str, move: bool, operator: str) -> tuple[bool, models.IngestState]:
    """Run every stage of the bundle (or move document) at ``path`` as job ``job_id`` in this
    process; return whether it completed, and the job's state then."""
    record.by_operator(job_id, states.OK, states.UPLOADING, 100, operator=operator)
    completed = run_job(make_context(job_id, path, user, move=move))
    row = models.read_state(job_id)
    outcome = "completed" if completed else "failed again"
    note = audit_line(operator, f"retried the job from {path} as {user}: {outcome}")
    record.by_operator(job_id, row.state, row.task, float(row.task_percent), exception=row.exception,
                       complete=row.complete, operator=operator, note=note)
    logger.warning("job %s: %s", job_id, note)
    return completed, models.read_state(job_id)
