"""The stage table: every stage of an upload and of a move, in order, each a Celery task.

A row names the stage as the job's state shows it (``states``), the Celery task that runs it
(``pacifica.ingest.<task>``, names that messages already in a broker route by), and the function
that does its work with the task's runtime. ``stage_state`` records each stage around that
function; a failing stage records FAILED, raises (so Celery records the failure too) and
thereby stops the chain. Adding a stage means writing its function and adding its row to
``UPLOAD`` or ``MOVE``.

Each task receives and returns the job's message (``JobMessage``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import Task, chain
from celery.exceptions import Ignore

from ..common import states
from ..common.errors import IngestError
from ..common.message import JobMessage, make_message
from ..db import archived
from ..db import quotas as quota_holds
from ..volume.manifest import Manifest, open_manifest
from . import pipeline, quotas, record
from .celery_app import INGEST_APP, StageTask

logger = logging.getLogger(__name__)


Context = JobMessage
StageWork = Callable[[StageTask, JobMessage], None]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of the table: the stage's name, its Celery task, and its work."""

    name: str
    task_name: str
    work: StageWork
    # Run after the stage has been recorded as finished (cleaning up may not undo the record).
    then: StageWork | None = None
    task: Any = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", _register(self))


def _register(row: Stage) -> Task:
    def run(self: StageTask, ctx: JobMessage) -> JobMessage:
        if record.ended(ctx["job_id"]):
            # A message for a job that has ended: a stage finished by a killed server's worker
            # and also resumed by its successor, a broker's second delivery, an operator's fail.
            # Running the stage would undo the end (or fail a completed job for its missing
            # manifest); Ignore stops the chain here and records no result.
            logger.info("job %s has ended; its %r message is ignored", ctx["job_id"], row.name)
            raise Ignore()
        with record.stage(ctx["job_id"], row.name, will_retry=not self.final_attempt):
            row.work(self, ctx)
        if row.then is not None:
            row.then(self, ctx)
        return ctx

    run.__name__ = run.__qualname__ = f"stage_{row.task_name}"
    run.__doc__ = f"Stage {row.name!r} of a job."
    return INGEST_APP.task(name=f"pacifica.ingest.{row.task_name}", base=StageTask, bind=True)(run)


def _manifest(task: StageTask, ctx: JobMessage) -> Manifest:
    """The job's manifest, which 'load metadata' wrote (the caller closes it)."""
    manifest = open_manifest(task.runtime.spool.manifest_path(ctx["job_id"]))
    if manifest is None:
        raise IngestError(f"job {ctx['job_id']}: its metadata was never loaded (no manifest on the volume)")
    return manifest


def _open_tar(task: StageTask, ctx: JobMessage) -> None:
    pipeline.check_tar(ctx["path"])


def _load_metadata(task: StageTask, ctx: JobMessage) -> None:
    rt = task.runtime
    with pipeline.load_bundle_metadata(ctx["job_id"], ctx["path"], rt.spool, rt.peers.uniqueid,
                                       rt.settings.metadata_limit) as manifest:
        _within_quotas(ctx, manifest)


def _load_move_metadata(task: StageTask, ctx: JobMessage) -> None:
    rt = task.runtime
    with pipeline.load_move_metadata(ctx["job_id"], ctx["path"], rt.spool, rt.peers.uniqueid,
                                     rt.settings.move_roots) as manifest:
        _within_quotas(ctx, manifest)


def _within_quotas(ctx: JobMessage, manifest: Manifest) -> None:
    """The job's real sizes, project and instrument against the quotas (before a byte is archived)."""
    values = manifest.transaction_values()
    owner = archived.Owner(ctx.get("user"), values.get("project"), values.get("instrument"))
    quotas.commit(ctx["job_id"], owner, manifest.total_bytes(), manifest.count())


def _policy(task: StageTask, ctx: JobMessage) -> None:
    with _manifest(task, ctx) as manifest:
        pipeline.check_policy(ctx["job_id"], manifest, ctx["user"], task.runtime.peers.policy)


def _ingest_files(task: StageTask, ctx: JobMessage) -> None:
    rt = task.runtime
    job_id = ctx["job_id"]
    with _manifest(task, ctx) as manifest:
        pipeline.ingest_files(job_id, ctx["path"], manifest, rt.peers.archive, rt.settings.transfer_size,
                              record.reporter(job_id, states.INGEST_FILES), final=task.final_attempt,
                              concurrency=rt.settings.archive_concurrency,
                              ledger_path=rt.spool.ledger_path(job_id), file_retries=rt.settings.http_retries)


def _move_files(task: StageTask, ctx: JobMessage) -> None:
    with _manifest(task, ctx) as manifest:
        pipeline.move_files(manifest, task.runtime.peers.archive)


def _ingest_metadata(task: StageTask, ctx: JobMessage) -> None:
    rt = task.runtime
    with _manifest(task, ctx) as manifest:
        # Recorded first (again on a retry: a file recorded before is left as it is), so that
        # no job completes with its files missing from the record; a rollback forgets them.
        pipeline.record_archived(ctx["job_id"], manifest, ctx.get("user"))
        quota_holds.release(ctx["job_id"])  # the record counts the files now
        pipeline.ingest_metadata(ctx["job_id"], manifest, rt.peers.metadata, rt.peers.archive,
                                 move=ctx.get("move", False), final=task.final_attempt,
                                 ledger_path=rt.spool.ledger_path(ctx["job_id"]),
                                 forget=functools.partial(archived.forget_job, ctx["job_id"]))


def _discard(task: StageTask, ctx: JobMessage) -> None:
    """The job is complete: its files leave the volume."""
    task.runtime.spool.discard(ctx["job_id"], ctx["path"])


OPEN_TAR = Stage(states.OPEN_TAR, "open_tar", _open_tar)
LOAD_METADATA = Stage(states.LOAD_METADATA, "load_metadata", _load_metadata)
LOAD_MOVE_METADATA = Stage(states.LOAD_METADATA, "load_move_metadata", _load_move_metadata)
POLICY = Stage(states.POLICY_VALIDATION, "policy", _policy)
INGEST_FILES = Stage(states.INGEST_FILES, "ingest_files", _ingest_files)
MOVE_FILES = Stage(states.MOVE_FILES, "move_files", _move_files)
INGEST_METADATA = Stage(states.INGEST_METADATA, "ingest_metadata", _ingest_metadata, then=_discard)

UPLOAD: tuple[Stage, ...] = (OPEN_TAR, LOAD_METADATA, POLICY, INGEST_FILES, INGEST_METADATA)
MOVE: tuple[Stage, ...] = (LOAD_MOVE_METADATA, POLICY, MOVE_FILES, INGEST_METADATA)


def stages_of(move: bool) -> tuple[Stage, ...]:
    """The stages of a move or of an upload, in order."""
    return MOVE if move else UPLOAD


def job_chain(ctx: JobMessage, from_task: str | None = None):
    """Return the chain of stages for ``ctx``, starting at the stage named ``from_task`` (or the first)."""
    rows = stages_of(ctx.get("move", False))
    names = [row.name for row in rows]
    start = names.index(from_task) if from_task in names else 0
    first, *rest = [row.task for row in rows[start:]]
    return chain(first.s(ctx), *[task.s() for task in rest])


def make_context(job_id: int, path: str, user: str, move: bool = False) -> JobMessage:
    """Return the message every stage of a job receives."""
    return make_message(job_id, path, user, move)


def run_job(ctx: JobMessage) -> bool:
    """Run every stage of a job in this process (``pacifica-ingest-cmd retry``); True if it completed."""
    for row in stages_of(ctx.get("move", False)):
        try:
            row.task(ctx)
        except Exception:  # noqa: BLE001 - the stage has recorded FAILED with its reason
            return False
    return True


@INGEST_APP.task(name="pacifica.ingest.tasks.ingest")
def ingest(job_id: int, filepath: str, authed_user: str) -> None:
    """Ingest a tar bundle into the archive: start the chain of upload stages."""
    job_chain(make_context(job_id, filepath, authed_user)).apply_async()


@INGEST_APP.task(name="pacifica.ingest.tasks.move")
def move(job_id: int, filepath: str, authed_user: str) -> None:
    """Move the files of a move document into the archive: start the chain of move stages."""
    job_chain(make_context(job_id, filepath, authed_user, move=True)).apply_async()
