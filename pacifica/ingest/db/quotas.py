"""Quotas (schema 2.5): limits of bytes, files and uploads at once per user, project or
instrument, and what uploads in flight hold of them.

What counts against a quota is what the record of archived files holds (``db.archived``; within a
rolling ``period`` when one is set) and what the jobs not yet complete hold (``IngestQuotaHold``:
the size an upload declared, replaced by the real sizes once its metadata is loaded). A hold goes
when its job's files enter the record or the job ends, so usage returns to what it was after a
rollback or a failed job.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import operator
from collections.abc import Iterable
from typing import Any, cast

import peewee

from ..common import states
from . import migrations
from .archived import IngestArchivedFile, Owner
from .models import DB, BaseModel, IngestState, utcnow

logger = logging.getLogger(__name__)

USER, PROJECT, INSTRUMENT = "user", "project", "instrument"
SCOPES = (USER, PROJECT, INSTRUMENT)


class IngestQuota(BaseModel):
    """The limits of one user, project or instrument (None: no limit of that kind)."""

    scope = peewee.CharField()
    name = peewee.CharField()
    max_bytes = peewee.BigIntegerField(null=True)
    max_files = peewee.BigIntegerField(null=True)
    # Seconds of the rolling window bytes and files are counted in (None: everything archived).
    period = peewee.BigIntegerField(null=True)
    # Uploads of a user receiving bytes at once.
    max_uploads = peewee.IntegerField(null=True)
    updated = peewee.DateTimeField(default=utcnow)
    operator = peewee.CharField(null=True)

    class Meta:
        table_name = migrations.QUOTA_TABLE
        primary_key = peewee.CompositeKey("scope", "name")


class IngestQuotaHold(BaseModel):
    """What a job not yet complete holds of its owner's quotas."""

    job_id = peewee.BigIntegerField(primary_key=True)
    submitter = peewee.CharField(null=True, index=True)
    project = peewee.CharField(null=True, index=True)
    instrument = peewee.CharField(null=True, index=True)
    bytes = peewee.BigIntegerField(default=0)
    files = peewee.BigIntegerField(default=0)
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = migrations.HOLD_TABLE


_ARCHIVED_COLUMN = {USER: IngestArchivedFile.submitter, PROJECT: IngestArchivedFile.project,
                    INSTRUMENT: IngestArchivedFile.instrument}
_HOLD_COLUMN = {USER: IngestQuotaHold.submitter, PROJECT: IngestQuotaHold.project,
                INSTRUMENT: IngestQuotaHold.instrument}


def names_of(owner: Owner) -> list[tuple[str, str]]:
    """The (scope, name) pairs ``owner`` is counted against."""
    return [(scope, str(name)) for scope, name in
            ((USER, owner.submitter), (PROJECT, owner.project), (INSTRUMENT, owner.instrument)) if name]


def get(scope: str, name: str) -> IngestQuota | None:
    """The quota of ``name`` in ``scope``, or None."""
    return IngestQuota.get_or_none((IngestQuota.scope == scope) & (IngestQuota.name == str(name)))


def of(owner: Owner, lock: bool = False) -> list[IngestQuota]:
    """The quotas ``owner`` is counted against, in a fixed order. With ``lock`` (inside a
    transaction), their rows are locked until it ends (``FOR UPDATE``; on SQLite the caller's
    first write takes the database's one write lock instead): admissions under one quota then
    take turns, and two uploads cannot both take its last bytes."""
    pairs = names_of(owner)
    if not pairs:
        return []
    where = functools.reduce(operator.or_, [(IngestQuota.scope == scope) & (IngestQuota.name == name)
                                            for scope, name in pairs])
    query = IngestQuota.select().where(where).order_by(IngestQuota.scope, IngestQuota.name)
    if lock and not isinstance(DB.obj, peewee.SqliteDatabase):
        query = query.for_update()
    return list(query)


def put(scope: str, name: str, operator: str | None = None, **limits: Any) -> IngestQuota:
    """Set the quota of ``name`` in ``scope`` to ``limits`` (``max_bytes``, ``max_files``,
    ``period``, ``max_uploads``; a limit not given keeps its value, None removes it)."""
    if scope not in SCOPES:
        raise ValueError(f"a quota is of a {', '.join(SCOPES)}, not {scope!r}")
    with DB.atomic():
        current = get(scope, name)
        values = {"max_bytes": None, "max_files": None, "period": None, "max_uploads": None}
        if current is not None:
            values.update({key: getattr(current, key) for key in values})
        values.update(limits)
        IngestQuota.delete().where((IngestQuota.scope == scope) & (IngestQuota.name == str(name))).execute()
        IngestQuota.insert(scope=scope, name=str(name), updated=utcnow(), operator=operator, **values).execute()
    quota = get(scope, name)
    assert quota is not None
    return quota


def remove(scope: str, name: str) -> bool:
    """Remove the quota of ``name`` in ``scope``; whether there was one."""
    return bool(IngestQuota.delete().where((IngestQuota.scope == scope) & (IngestQuota.name == str(name))).execute())


def everything() -> list[IngestQuota]:
    """Every quota, by scope and name."""
    return list(IngestQuota.select().order_by(IngestQuota.scope, IngestQuota.name))


@dataclasses.dataclass(frozen=True)
class Usage:
    """What counts against one quota: bytes and files archived (in its period), and held by jobs
    in flight, and how many of a user's uploads are receiving bytes."""

    bytes: int = 0
    files: int = 0
    held_bytes: int = 0
    held_files: int = 0
    uploading: int = 0

    @property
    def total_bytes(self) -> int:
        return self.bytes + self.held_bytes

    @property
    def total_files(self) -> int:
        return self.files + self.held_files


def usage(scope: str, name: str, period: int | None = None, besides: int | None = None) -> Usage:
    """What counts against the quota of ``name`` in ``scope``: the archived files (archived in the
    last ``period`` seconds, if given) and the holds of jobs in flight but job ``besides``'s."""
    column = _ARCHIVED_COLUMN[scope]
    archived = IngestArchivedFile.select(peewee.fn.COALESCE(peewee.fn.SUM(IngestArchivedFile.size), 0),
                                         peewee.fn.COUNT(IngestArchivedFile.file_id)).where(column == str(name))
    if period:
        archived = archived.where(IngestArchivedFile.archived >= utcnow() - datetime.timedelta(seconds=period))
    size, count = archived.tuples().first() or (0, 0)
    held = IngestQuotaHold.select(peewee.fn.COALESCE(peewee.fn.SUM(IngestQuotaHold.bytes), 0),
                                  peewee.fn.COALESCE(peewee.fn.SUM(IngestQuotaHold.files), 0)).where(
        _HOLD_COLUMN[scope] == str(name))
    if besides is not None:
        held = held.where(IngestQuotaHold.job_id != int(besides))
    held_bytes, held_files = held.tuples().first() or (0, 0)
    uploading = uploading_jobs(str(name), besides) if scope == USER else 0
    return Usage(int(size or 0), int(count or 0), int(held_bytes or 0), int(held_files or 0), uploading)


def uploading_jobs(user: str, besides: int | None = None) -> int:
    """How many jobs of ``user`` are receiving their bundle (UPLOADING, not ended)."""
    query = IngestState.select().where(IngestState.submitter == user, IngestState.task == states.UPLOADING,
                                       IngestState.complete == False)  # noqa: E712 - SQL, not Python
    if besides is not None:
        query = query.where(IngestState.job_id != int(besides))
    return query.count()


def hold(job_id: int, owner: Owner, size: int, files: int = 0) -> None:
    """Hold ``size`` bytes and ``files`` files of ``owner``'s quotas for job ``job_id`` (replacing
    what it held)."""
    row = {"job_id": int(job_id), "submitter": owner.submitter, "project": owner.project,
           "instrument": owner.instrument, "bytes": int(size), "files": int(files), "created": utcnow()}
    with DB.atomic():
        IngestQuotaHold.delete().where(IngestQuotaHold.job_id == int(job_id)).execute()
        IngestQuotaHold.insert(**row).execute()


def release(job_id: int) -> None:
    """Job ``job_id`` holds nothing any more (its files are in the record, or it ended)."""
    IngestQuotaHold.delete().where(IngestQuotaHold.job_id == int(job_id)).execute()


def release_when_ended(job_id: int) -> None:
    """A completion hook (``models.COMPLETION_HOOKS``): a job that ended holds nothing; never raises."""
    try:
        release(job_id)
    except peewee.PeeweeException:
        logger.exception("job %s: could not release what it held of its quotas", job_id)


def projects_and_instruments_of(user: str) -> list[tuple[str, str]]:
    """The projects and instruments ``user`` archived or holds files of, as (scope, name)."""
    found: set[tuple[str, str]] = set()
    for model, scope_columns in ((IngestArchivedFile, (IngestArchivedFile.project, IngestArchivedFile.instrument)),
                                 (IngestQuotaHold, (IngestQuotaHold.project, IngestQuotaHold.instrument))):
        submitter = model.submitter
        for scope, column in zip((PROJECT, INSTRUMENT), scope_columns, strict=True):
            query = model.select(column).distinct().where(submitter == user, column.is_null(False))
            found.update((scope, str(value)) for (value,) in cast(Iterable[tuple[Any]], query.tuples()))
    return sorted(found)
