"""Which ingest jobs still have a message in the embedded queue (``core.queue``)."""

from __future__ import annotations

from ...core.queue import queued_task_args


def queued_job_ids(folder: str) -> set[int]:
    """Return the job ids that have a message waiting in ``folder``."""
    job_ids = set()
    for args in queued_task_args(folder):
        try:
            job_ids.add(int(args[0]["job_id"]))
        except (IndexError, KeyError, TypeError, ValueError):
            continue
    return job_ids
