"""Periodic care of the volume and the job table: expiring failed bundles and idle resumable
uploads, finding stuck jobs."""

from __future__ import annotations

import datetime
import logging
import time

from ..common import states
from ..db import models
from ..volume.resumable import TusStore
from ..volume.s3.prefix import Prefixes
from ..volume.s3.store import ObjectStore
from ..volume.spool import Spool
from . import record

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


def expire_uploads(uploads: TusStore) -> list[int]:
    """Remove uploads that received nothing for longer than the expiry time; their jobs fail.
    Partial uploads never concatenated go the same way."""
    for key in uploads.expired_partials():
        uploads.discard(key)
        logger.warning("partial upload %s expired; its bytes were removed", key)
    expired = uploads.expired()
    for job_id in expired:
        uploads.discard(job_id)
        record.upload_failed(job_id, "the resumable upload expired: nothing arrived for "
                                     f"{uploads.expiry / 3600:g} hours")
        logger.warning("job %s: resumable upload expired; its bytes were removed", job_id)
    return expired


def expire_s3(objects: ObjectStore, max_age: float, now: float | None = None) -> list[int]:
    """The S3 door's leftovers idle for ``max_age`` seconds go: multipart uploads never completed
    (their parts' space is freed), objects no ``metadata.txt`` claimed, and prefixes whose files
    never all arrived (their jobs fail, naming what was missing). Return those jobs."""
    uploads, waiting_objects = objects.expire(max_age, now)
    if uploads or waiting_objects:
        logger.warning("S3 door: %d multipart uploads and %d objects idle for %g hours were removed", uploads,
                       waiting_objects, max_age / 3600)
    now = time.time() if now is None else now
    prefixes = Prefixes(objects)
    failed = []
    for waiting in list(prefixes.waiting()):
        if waiting.created + max_age >= now:
            continue
        prefixes.done(waiting.user, waiting.prefix)
        record.upload_failed(waiting.job_id, f"the files of {waiting.prefix or 'the bucket'!r} listed by its "
                                             f"metadata.txt did not all arrive within {max_age / 3600:g} hours")
        logger.warning("job %s: the prefix %s expired before its files arrived", waiting.job_id, waiting.prefix)
        failed.append(waiting.job_id)
    return failed
