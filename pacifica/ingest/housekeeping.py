"""Periodic care of the volume and the job table: expiring failed bundles, finding stuck jobs."""

from __future__ import annotations

import datetime
import logging

from . import orm, states
from .spool import Spool

logger = logging.getLogger(__name__)


def expire_failed_bundles(spool: Spool, hours: float) -> list[int]:
    """Remove the volume files of jobs that failed more than ``hours`` ago (0: keep them all)."""
    if hours <= 0:
        return []
    cutoff = orm.utcnow() - datetime.timedelta(hours=hours)
    expired = []
    query = orm.IngestState.select(orm.IngestState.job_id).where(
        (orm.IngestState.state == states.FAILED) & (orm.IngestState.updated < cutoff))
    for row in query:
        job_id = int(row.job_id)
        if any(spool.exists(job_id)):
            spool.discard(job_id)
            expired.append(job_id)
    if expired:
        logger.info("removed the bundles of %d jobs that failed more than %s hours ago", len(expired), hours)
    return expired


def stalled_jobs(minutes: float) -> list[orm.IngestState]:
    """Return unfinished jobs whose state has not changed for ``minutes``, oldest first."""
    cutoff = orm.utcnow() - datetime.timedelta(minutes=minutes)
    return list(orm.IngestState.select()
                .where((orm.IngestState.complete == False) & (orm.IngestState.updated <= cutoff))  # noqa: E712
                .order_by(orm.IngestState.updated))
