"""The Celery app and one thin task per pipeline stage, linked with ``celery.chain``.

Run the workers with ``celery -A pacifica.ingest.tasks worker``. The app reads its broker
and backend from the settings when it is first used, not at import. Each task receives and
returns a small JSON context ``{"job_id", "path", "user"}`` and calls one ``pipeline``
function inside ``pipeline.stage()``; a failing stage records FAILED, raises (so Celery records
the failure too) and thereby stops the chain.

The module-level functions named as in the published service (``ingest_check_tarfile`` ...
``validate_meta``) keep their documented signatures for code that calls them directly.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from celery import Celery, Task, chain
from celery.exceptions import Retry

from ..core import queue
from . import orm, pipeline, states
from .bootstrap import runtime
from .config import EMBEDDED, Settings, load_settings
from .errors import IngestError, PeerError, PeerUnavailable
from .tarutils import MetaParser, TarIngestor, open_bundle, patch_files

logger = logging.getLogger(__name__)

Context = dict[str, Any]


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery settings derived from ``settings``.

    ``embedded:`` as the broker queues messages as files in ``{data_dir}/queue``; as the result
    backend it keeps no results (the job's state lives in the database either way).
    """
    embedded: dict[str, Any] = {}
    broker = settings.broker_url
    if settings.broker_embedded:
        broker = f"{queue.TRANSPORT}://localhost//"
        embedded = {
            "broker_transport_options": queue.transport_options(settings.data_path("queue")),
            "worker_enable_remote_control": False,
            "worker_send_task_events": False,
        }
    elif settings.broker_url.split(":", 1)[0] in ("amqp", "pyamqp", "amqps"):
        # Wait for RabbitMQ to confirm each message: without it, a publish on a connection that
        # died silently "succeeds", and the job would wait in UPLOADING for ever.
        embedded = {"broker_transport_options": {"confirm_publish": True}}
    backend = None if settings.backend_url == EMBEDDED else settings.backend_url
    return {
        **embedded,
        "broker_url": broker,
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Stages are idempotent: a message is acknowledged only once its stage has finished,
        # so a worker that dies mid-stage leaves the message to be delivered again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # A client waiting on POST /upload learns within seconds that the broker is down.
        "broker_connection_timeout": 3,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                                      "interval_max": 1},
        "result_expires": 24 * 3600,
        # Keep each stage's arguments with its result, so an operator can find a job's tasks.
        "result_extended": True,
    }


INGEST_APP = Celery("ingest", set_as_current=False)
INGEST_APP.add_defaults(lambda: celery_config(load_settings()))
app = INGEST_APP


def configure_celery(settings: Settings) -> None:
    """Point the Celery app at the broker and backend of ``settings``."""
    INGEST_APP.conf.update(celery_config(settings))


class StageTask(Task):
    """Base of the stage tasks: make sure the runtime exists, hold one database connection, and
    retry a stage whose peer was unavailable, with exponential backoff and jitter, up to
    ``stage_retries`` times (a refusal or a bad bundle fails at once)."""

    # The bound is ``stage_retries`` (see final_attempt), not Celery's own default of 3.
    max_retries = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        runtime()
        with orm.DB.connection_context():
            try:
                return super().__call__(*args, **kwargs)
            except PeerUnavailable as exc:
                if self.final_attempt:
                    raise
                try:
                    raise self.retry(exc=exc, countdown=self.backoff()) from None
                except Retry:
                    raise
                except Exception as scheduling:
                    # The stage said it would be retried; since it cannot be, the job fails here.
                    job_id = args[0]["job_id"]
                    task = orm.read_state(job_id).task
                    orm.update_state(job_id, states.FAILED, task, 0,
                                     f"{exc}; the retry could not be queued: {scheduling}")
                    raise

    @property
    def final_attempt(self) -> bool:
        """True when a transient failure must fail the job (retries used up, or run in-process)."""
        return bool(self.request.called_directly) or self.request.retries >= runtime().settings.stage_retries

    def backoff(self) -> float:
        """Seconds before the next attempt: ``retry_delay`` doubled each time, with jitter."""
        base = runtime().settings.retry_delay * (2 ** self.request.retries)
        return base * random.uniform(0.5, 1.0)


def _stage_task(name: str):
    return INGEST_APP.task(name=f"pacifica.ingest.{name}", base=StageTask, bind=True)


def _stage(task: StageTask, ctx: Context, name: str):
    """Record stage ``name`` of the job around the block (see ``pipeline.stage``)."""
    return pipeline.stage(ctx["job_id"], name, will_retry=not task.final_attempt)


@_stage_task("open_tar")
def stage_open_tar(self: StageTask, ctx: Context) -> Context:
    """'open tar'."""
    with _stage(self, ctx, states.OPEN_TAR):
        pipeline.check_tar(ctx["path"])
    return ctx


@_stage_task("load_metadata")
def stage_load_metadata(self: StageTask, ctx: Context) -> Context:
    """'load metadata' of an upload."""
    rt = runtime()
    with _stage(self, ctx, states.LOAD_METADATA):
        pipeline.load_bundle_metadata(ctx["job_id"], ctx["path"], rt.spool, rt.peers.uniqueid)
    return ctx


@_stage_task("load_move_metadata")
def stage_load_move_metadata(self: StageTask, ctx: Context) -> Context:
    """'load metadata' of a move."""
    rt = runtime()
    with _stage(self, ctx, states.LOAD_METADATA):
        pipeline.load_move_metadata(ctx["job_id"], ctx["path"], rt.spool, rt.peers.uniqueid, rt.settings.move_roots)
    return ctx


def _sidecar(ctx: Context) -> dict[str, Any]:
    sidecar = runtime().spool.read_sidecar(ctx["job_id"])
    if sidecar is None:
        raise IngestError(f"job {ctx['job_id']}: its metadata was never loaded (no sidecar on the volume)")
    return sidecar


@_stage_task("policy")
def stage_policy(self: StageTask, ctx: Context) -> Context:
    """'Policy Validation'."""
    with _stage(self, ctx, states.POLICY_VALIDATION):
        pipeline.check_policy(_sidecar(ctx), ctx["user"], runtime().peers.policy)
    return ctx


def _progress_reporter(job_id: int, task: str, interval: float = 0.5):
    """Record a stage's progress at most every ``interval`` seconds (and always when ``final``):
    the percent of bytes done, below 100 until the stage ends, and the byte and file counts."""
    last = time.monotonic()

    def report(done: int, total: int, files_done: int, files_total: int, final: bool = False) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval or final:
            last = now
            percent = min(99.9, round(100.0 * done / total, 1)) if total else 0
            orm.update_state(job_id, states.OK, task, percent, progress=(done, total, files_done, files_total),
                             event=False)

    return report


@_stage_task("ingest_files")
def stage_ingest_files(self: StageTask, ctx: Context) -> Context:
    """'ingest files'."""
    rt = runtime()
    job_id = ctx["job_id"]
    with _stage(self, ctx, states.INGEST_FILES):
        pipeline.ingest_files(job_id, ctx["path"], _sidecar(ctx), rt.peers.archive, rt.settings.transfer_size,
                              _progress_reporter(job_id, states.INGEST_FILES), final=self.final_attempt,
                              concurrency=rt.settings.archive_concurrency,
                              ledger_path=rt.spool.ledger_path(job_id), file_retries=rt.settings.http_retries)
    return ctx


@_stage_task("move_files")
def stage_move_files(self: StageTask, ctx: Context) -> Context:
    """'move files'."""
    with _stage(self, ctx, states.MOVE_FILES):
        pipeline.move_files(_sidecar(ctx), runtime().peers.archive)
    return ctx


@_stage_task("ingest_metadata")
def stage_ingest_metadata(self: StageTask, ctx: Context) -> Context:
    """'ingest metadata', then the job's files are removed from the volume."""
    rt = runtime()
    job_id = ctx["job_id"]
    with _stage(self, ctx, states.INGEST_METADATA):
        pipeline.ingest_metadata(job_id, _sidecar(ctx), rt.peers.metadata, rt.peers.archive,
                                 move=ctx.get("move", False), final=self.final_attempt,
                                 ledger_path=rt.spool.ledger_path(job_id))
    rt.spool.discard(job_id, ctx["path"])
    return ctx


def stage_signatures(move: bool) -> list[tuple[str, Any]]:
    """Return (task name, Celery task) of each stage of an upload or a move, in order."""
    if move:
        return [(states.LOAD_METADATA, stage_load_move_metadata), (states.POLICY_VALIDATION, stage_policy),
                (states.MOVE_FILES, stage_move_files), (states.INGEST_METADATA, stage_ingest_metadata)]
    return [(states.OPEN_TAR, stage_open_tar), (states.LOAD_METADATA, stage_load_metadata),
            (states.POLICY_VALIDATION, stage_policy), (states.INGEST_FILES, stage_ingest_files),
            (states.INGEST_METADATA, stage_ingest_metadata)]


def job_chain(ctx: Context, from_task: str | None = None):
    """Return the chain of stages for ``ctx``, starting at the stage named ``from_task`` (or the first)."""
    stages = stage_signatures(ctx.get("move", False))
    names = [name for name, _task in stages]
    start = names.index(from_task) if from_task in names else 0
    first, *rest = [task for _name, task in stages[start:]]
    return chain(first.s(ctx), *[task.s() for task in rest])


def make_context(job_id: int, path: str, user: str, move: bool = False) -> Context:
    """Return the message every stage of a job receives."""
    return {"job_id": int(job_id), "path": str(path), "user": str(user), "move": bool(move)}


def run_job(ctx: Context) -> bool:
    """Run every stage of a job in this process (``pacifica-ingest-cmd retry``); True if it completed."""
    for _name, task in stage_signatures(ctx.get("move", False)):
        try:
            task(ctx)
        except Exception:  # noqa: BLE001 - the stage has recorded FAILED with its reason
            return False
    return True


@INGEST_APP.task(name="pacifica.ingest.deliver_callback", bind=True, max_retries=None)
def deliver_callback(self: Task, job_id: int) -> None:
    """POST a finished job's state to its callback URL; try again later if the receiver failed."""
    from . import callbacks

    rt = runtime()
    with orm.DB.connection_context():
        wait = callbacks.attempt(job_id, callbacks.session(), rt.settings.http_timeout or 60, rt.settings.retry_delay)
    if wait is not None:
        raise self.retry(countdown=wait)


@INGEST_APP.task(name="pacifica.ingest.tasks.ingest")
def ingest(job_id: int, filepath: str, authed_user: str) -> None:
    """Ingest a tar bundle into the archive: start the chain of upload stages."""
    job_chain(make_context(job_id, filepath, authed_user)).apply_async()


@INGEST_APP.task(name="pacifica.ingest.tasks.move")
def move(job_id: int, filepath: str, authed_user: str) -> None:
    """Move the files of a move document into the archive: start the chain of move stages."""
    job_chain(make_context(job_id, filepath, authed_user, move=True)).apply_async()


# ---- the published module-level functions -------------------------------------------------

IngestException = IngestError


def ingest_check_tarfile(job_id: int, filepath: str):
    """Check the ingest tarfile and return it open; FAILED 'open tar' if it is not a tar."""
    with pipeline.stage(job_id, states.OPEN_TAR):
        return open_bundle(filepath)


def ingest_metadata_parser(job_id: int, tar) -> MetaParser:
    """Parse a bundle's metadata and reserve its file ids, recording 'load metadata'."""
    meta = MetaParser()
    with pipeline.stage(job_id, states.LOAD_METADATA):
        meta.load_meta(tar, job_id)
    return meta


def move_metadata_parser(job_id: int, metafile: str) -> MetaParser:
    """Parse a move document and reserve its file ids, recording 'load metadata'."""
    meta = MetaParser()
    with pipeline.stage(job_id, states.LOAD_METADATA):
        meta.read_meta(metafile, job_id)
    return meta


def validate_meta(meta_str: str, authed_user: str) -> tuple[bool, str]:
    """Ask the policy whether ``authed_user`` may ingest ``meta_str``; return (allowed, reason)."""
    import json

    try:
        runtime().peers.policy.check_ingest(json.loads(meta_str), authed_user)
    except (PeerError, ValueError) as exc:
        return False, str(exc)
    return True, ""


def ingest_policy_check(job_id: int, meta_str: str, authed_user: str) -> None:
    """Check the metadata with the policy, recording 'Policy Validation'."""
    with pipeline.stage(job_id, states.POLICY_VALIDATION):
        allowed, reason = validate_meta(meta_str, authed_user)
        if not allowed:
            raise IngestError(reason)


def ingest_files(job_id: int, ingest_obj: TarIngestor) -> None:
    """Send the files of a ``TarIngestor`` to the archive, recording 'ingest files'."""
    with pipeline.stage(job_id, states.INGEST_FILES):
        ingest_obj.ingest()


def move_files(job_id: int, meta_obj: MetaParser) -> None:
    """Move the files of a move document in the archive, recording 'move files'."""
    with pipeline.stage(job_id, states.MOVE_FILES):
        patch_files(meta_obj)


def ingest_metadata(job_id: int, meta: MetaParser) -> None:
    """Post the metadata to the metadata service, recording 'ingest metadata'."""
    with pipeline.stage(job_id, states.INGEST_METADATA):
        posted, reason = meta.post_metadata()
        if not posted:
            raise IngestError(reason)
