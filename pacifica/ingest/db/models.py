"""The job state models and the functions that read and write a job's state.

``DB`` is a ``peewee.DatabaseProxy``: nothing connects at import. ``bootstrap.configure()``
points it at the configured database. The published ``orm`` module re-exports these names
with ``OrmSync``.
"""

from __future__ import annotations

import datetime
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal

import peewee

from ...core.auth.tokens import token_model
from ...core.models import ConnectionMethods, SchemaVersionMethods
from ...core.redact import MESSAGE_LIMIT, redact_credentials
from ..common import states
from . import migrations

logger = logging.getLogger(__name__)

DB = peewee.DatabaseProxy()

SCHEMA_MAJOR, SCHEMA_MINOR = migrations.LATEST


def utcnow() -> datetime.datetime:
    """Return the current UTC time as a naive datetime, as the published schema stores it."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class BaseModel(peewee.Model):
    """Base class binding the models to the configured database."""

    class Meta:
        database = DB


class IngestStateSystem(SchemaVersionMethods, BaseModel):
    """Ingest State Schema Version Model: rows ``('major', M)`` and ``('minor', m)``."""

    part = peewee.CharField(primary_key=True)
    value = peewee.IntegerField(default=-1)

    class Meta:
        table_name = migrations.VERSION_TABLE

    schema = migrations.SCHEMA


class IngestState(ConnectionMethods, BaseModel):
    """One row per job: where it is in the pipeline and how it went."""

    job_id = peewee.BigIntegerField(primary_key=True, column_name="id")
    state = peewee.CharField()
    task = peewee.CharField()
    task_percent = peewee.DecimalField()
    exception = peewee.TextField(default="")
    complete = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)
    updated = peewee.DateTimeField(default=utcnow)
    # Schema 2.2: how far the job's current transfer is (NULL in rows the published code wrote).
    bytes_done = peewee.BigIntegerField(null=True)
    bytes_total = peewee.BigIntegerField(null=True)
    files_done = peewee.BigIntegerField(null=True)
    files_total = peewee.BigIntegerField(null=True)
    # Schema 2.3: the user the job was accepted from (NULL in older rows).
    submitter = peewee.CharField(null=True)

    class Meta:
        table_name = migrations.STATE_TABLE


class IngestStateEvent(BaseModel):
    """One change of a job's state: its history (schema 2.2)."""

    event_id = peewee.AutoField()
    job_id = peewee.BigIntegerField(index=True)
    time = peewee.DateTimeField(default=utcnow)
    state = peewee.CharField()
    task = peewee.CharField()
    task_percent = peewee.DecimalField()
    message = peewee.TextField(default="")
    operator = peewee.CharField(null=True)

    class Meta:
        table_name = migrations.EVENT_TABLE


class IngestCallback(BaseModel):
    """The completion callback of a job and how its delivery went (schema 2.2)."""

    job_id = peewee.BigIntegerField(primary_key=True)
    url = peewee.TextField()
    status = peewee.CharField(default="waiting")
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.TextField(default="")
    delivered = peewee.DateTimeField(null=True)

    class Meta:
        table_name = migrations.CALLBACK_TABLE


Progress = tuple[int, int, int, int]

# Called with the job id after each change that leaves a job complete (``bootstrap`` adds the
# completion callbacks); a hook must not raise.
COMPLETION_HOOKS: list[Callable[[int], None]] = []


def clip_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 40] + f" ... ({len(text) - limit + 40} characters cut)"


def update_state(job_id, state: str, task: str, task_percent, exception: str = "",
                 complete: bool | None = None, *, progress: Progress | None = None,
                 operator: str | None = None, event: bool = True, note: str | None = None) -> None:
    """Update the state of an ingest job, creating its row if it has none.

    ``complete`` defaults to the published rule: the job failed, or 'ingest metadata' reached 100.
    ``progress`` is (bytes done, bytes total, files done, files total) of the current stage; the
    counters are left as they are without it. Each update is also kept in the job's history
    (with the ``operator`` who made it, for admin commands), unless ``event`` is false: progress
    reports during a stage are not history.

    As in the published service, ``exception`` stays empty unless the job FAILED: clients read a
    non-empty exception as a failure. The text of any other update (a retry note, an operator's
    remark, or ``note``) is kept in the history only.
    """
    job_id = int(job_id)
    # What is stored is answered to clients: no credentials, and bounded (a hostile bundle can make
    # an exception of megabytes).
    exception = clip_message(redact_credentials(exception or ""))
    message = clip_message("\n".join(filter(None, [exception, redact_credentials(note or "")])))
    exception = exception if state == states.FAILED else ""
    percent = Decimal(str(float(task_percent or 0)))
    if complete is None:
        complete = states.is_complete(state, task, percent)
    now = utcnow()
    fields = {
        IngestState.state: state,
        IngestState.task: task,
        IngestState.task_percent: percent,
        IngestState.exception: exception or "",
        IngestState.complete: complete,
        IngestState.updated: now,
    }
    if progress is not None:
        fields.update(zip((IngestState.bytes_done, IngestState.bytes_total, IngestState.files_done,
                           IngestState.files_total), (int(value) for value in progress), strict=True))
    with DB.atomic():
        if not IngestState.update(fields).where(IngestState.job_id == job_id).execute():
            IngestState.insert({IngestState.job_id: job_id, **fields}).execute()
        if event:
            IngestStateEvent.insert(job_id=job_id, time=now, state=state, task=task, task_percent=percent,
                                    message=message, operator=operator).execute()
    if complete:
        for hook in COMPLETION_HOOKS:
            hook(job_id)


def note_event(job_id, message: str, operator: str | None = None) -> bool:
    """Add ``message`` to a job's history without changing its state (a fixity check of its
    files); False for an unknown job."""
    row = IngestState.get_or_none(IngestState.job_id == int(job_id))
    if row is None:
        return False
    IngestStateEvent.insert(job_id=row.job_id, time=utcnow(), state=row.state, task=row.task,
                            task_percent=row.task_percent, message=clip_message(message), operator=operator).execute()
    return True


# How a list of jobs may be ordered, newest first: by last change, by job id, by creation (age).
JOB_ORDERS: dict[str, peewee.Field] = {"changed": IngestState.updated, "id": IngestState.job_id,
                                       "age": IngestState.created}


def recent_jobs(limit: int, *, running: bool = False, state: str | None = None,
                submitters: Iterable[str] = (), order: str = "changed") -> Iterator[IngestState]:
    """The first ``limit`` jobs in ``order`` (``JOB_ORDERS``: changed last, highest id or created
    last first): only unfinished ones (``running``), only those in ``state``, only those of every
    one of ``submitters`` (given twice, a user filter and the viewer's own jobs, both must hold)."""
    column = JOB_ORDERS[order]
    query = IngestState.select().order_by(column.desc(), IngestState.job_id.desc()).limit(limit)
    if running:
        query = query.where(IngestState.complete == False)  # noqa: E712 - SQL, not Python
    elif state is not None:
        query = query.where(IngestState.state == state)
    for submitter in submitters:
        query = query.where(IngestState.submitter == submitter)
    return iter(query)


def write_transaction():
    """A transaction that writes from its first statement: on SQLite it takes the database's write
    lock at once (``BEGIN IMMEDIATE``), so that what it reads cannot change before it writes (a
    deferred one would fail to write, not wait, once another wrote meanwhile)."""
    if isinstance(DB.obj, peewee.SqliteDatabase):
        return DB.atomic("IMMEDIATE")
    return DB.atomic()


def claim_job(job_id, submitter: str | None = None, admit: Callable[[int], None] | None = None) -> bool:
    """Record a new job of ``submitter`` as UPLOADING; False if a job of that id exists already
    (its row is left as it is: a uniqueid service that hands out an id twice must not take over
    another job). ``admit(job_id)`` runs first in the same transaction: what it raises undoes
    everything, the job included."""
    job_id = int(job_id)
    now = utcnow()
    try:
        with write_transaction() if admit is not None else DB.atomic():
            if admit is not None:
                admit(job_id)
            IngestState.insert(job_id=job_id, state=states.OK, task=states.UPLOADING, task_percent=Decimal(0),
                               exception="", complete=False, created=now, updated=now,
                               submitter=submitter).execute()
            IngestStateEvent.insert(job_id=job_id, time=now, state=states.OK, task=states.UPLOADING,
                                    task_percent=Decimal(0), message="", operator=None).execute()
    except peewee.IntegrityError:
        return False
    return True


def read_history(job_id) -> list[IngestStateEvent]:
    """Return the state changes of a job, oldest first (empty for an unknown job)."""
    return list(IngestStateEvent.select().where(IngestStateEvent.job_id == int(job_id))
                .order_by(IngestStateEvent.event_id))


# The SELECT of read_state, compiled once per database: peewee takes longer to build it than
# PostgreSQL takes to answer it, and get_state is the endpoint clients poll.
_READ_STATE_SQL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def read_state(job_id) -> IngestState:
    """Return the state row of a job; raises ``IngestState.DoesNotExist`` for an unknown job."""
    database = DB.obj
    sql = _READ_STATE_SQL.get(database)
    if sql is None:
        sql = _READ_STATE_SQL[database] = IngestState.select().where(IngestState.job_id == 0).sql()[0]
    row = DB.execute_sql(sql, (int(job_id),)).fetchone()
    if row is None:
        raise IngestState.DoesNotExist(f"job {int(job_id)} does not exist")
    fields = IngestState._meta.sorted_fields
    values = {field.name: field.python_value(value) for field, value in zip(fields, row, strict=True)}
    return IngestState(__no_default=1, **values)


class IngestUniqueId(BaseModel):
    """The next free id of each mode, for the embedded uniqueid peer."""

    mode = peewee.CharField(primary_key=True)
    next_index = peewee.BigIntegerField()

    class Meta:
        table_name = migrations.UNIQUEID_TABLE


class IngestMetadata(BaseModel):
    """The metadata document of each transaction, for the embedded metadata peer."""

    job_id = peewee.BigIntegerField(primary_key=True)
    document = peewee.TextField()
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = migrations.METADATA_TABLE


# Schema 2.4: API tokens (``pacifica-ingest-cmd token``); only their digests are kept.
IngestToken = token_model(DB, migrations.TOKEN_TABLE)
