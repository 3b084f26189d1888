"""Resume jobs a stopped or killed service left half done (embedded broker).

The database, not the broker, says which jobs are unfinished. A message the embedded queue
still holds will resume its job by itself; any other unfinished job lost its message with a
killed worker, and is queued again from the stage it had reached (stages are idempotent, and a
job keeps the file ids it reserved). A job whose upload never finished arriving cannot be
resumed: it is failed with a message telling the client to send the bundle again.
"""

from __future__ import annotations

import logging
import os

from ..common import states
from ..common.queue import queued_job_ids
from ..db import models
from ..volume.spool import Spool
from . import record
from .stages import job_chain

logger = logging.getLogger(__name__)


def recover(queue_folder: str, spool: Spool) -> list[int]:
    """Re-queue every unfinished job that no queued message will resume; return their ids.

    Call it only while no worker consumes the queue (at start-up, before the embedded worker).
    """
    queued = queued_job_ids(queue_folder)
    resumed = []
    for row in models.IngestState.select().where(models.IngestState.complete == False):  # noqa: E712
        job_id = int(row.job_id)
        if job_id in queued:
            continue
        ctx = spool.read_job(job_id)
        if ctx is None:
            if os.path.exists(spool.resumable_path(job_id)):
                continue  # a resumable upload: its client carries on from the offset
            if row.task == states.UPLOADING:
                spool.discard_partial(job_id)
                record.upload_failed(job_id, "the service stopped before the whole bundle arrived; send it again")
                logger.warning("job %s: upload was cut off by a restart; marked FAILED", job_id)
            continue
        logger.warning("job %s: resuming at %r after a restart", job_id, row.task)
        job_chain(ctx, from_task=row.task).apply_async()
        resumed.append(job_id)
    return resumed
