"""The Celery entry point: ``celery -A pacifica.ingest.tasks worker``.

Importing this module registers every ingest task on the app (the stage table in ``stages``,
the completion callbacks) and tells the app how a worker builds its runtime (``bootstrap``). It
also keeps the published module-level functions (``ingest_check_tarfile`` ... ``validate_meta``,
from ``published``) importable from here, with their documented signatures.
"""

from __future__ import annotations

from .app import bootstrap  # noqa: F401 - gives the app the factory of its runtime
from .compat.published import (
    IngestException,
    ingest_check_tarfile,
    ingest_files,
    ingest_metadata,
    ingest_metadata_parser,
    ingest_policy_check,
    move_files,
    move_metadata_parser,
    validate_meta,
)
from .jobs.callbacks import deliver_callback
from .jobs.celery_app import INGEST_APP, IngestTask, StageTask, app, celery_config, configure_celery
from .jobs.fixity import audit_files
from .jobs.stages import MOVE, UPLOAD, Context, JobMessage, Stage, ingest, job_chain, make_context, move, run_job

__all__ = ["INGEST_APP", "MOVE", "UPLOAD", "Context", "IngestException", "IngestTask", "JobMessage", "Stage",
           "StageTask", "app", "audit_files", "celery_config", "configure_celery", "deliver_callback", "ingest",
           "ingest_check_tarfile", "ingest_files", "ingest_metadata", "ingest_metadata_parser", "ingest_policy_check",
           "job_chain", "make_context", "move", "move_files", "move_metadata_parser", "run_job", "validate_meta"]
