"""Periodic care of the volume and the job table: expiring failed bundles, finding stuck jobs."""

from __future__ import annotations

import datetime
import logging

from ..common import states
from ..db import models
from ..volume.spool import Spool

logger = logging.getLogger(__name__)


def expire_failed_bundles(spool: Spool, hours: float) -> list[int]:
    """Remove the volume files of jobs that failed more than ``hours`` ago (0: keep them all)."""
    if hours <= 0:
        return []
    cutoff = models.utcnow() - datetime.timedelta(hours=hours)
    expired = []
    query = models.IngestState.select(models.IngestState.job_id).where(
        (models.IngestState.state == states.FAILED) & (models.IngestState.updated < cutoff))
    for row in query:
        job_id = int(row.job_id)
        if any(spool.exists(job_id)):
            spool.discard(job_id)
            expired.append(job_id)
    if expired:
        logger.info("removed the bundles of %d jobs that failed more than %s hours ago", len(expired), hours)
    return expired


def stalled_jobs(minutes: float) -> list[models.IngestState]:
    """Return unfinished jobs whose state has not changed for ``minutes``, oldest first."""
    cutoff = models.utcnow() - datetime.timedelta(minutes=minutes)
    return list(models.IngestState.select()
                .where((models.IngestState.complete == False) & (models.IngestState.updated <= cutoff))  # noqa: E712
                .order_by(models.IngestState.updated))
