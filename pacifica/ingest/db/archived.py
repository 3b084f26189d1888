"""The record of what the service archived, and of every fixity check made of it (schema 2.5).

Each file archived for a completed job has a row: its job, its path in the transaction, size,
declared digest, owner (submitter, project, instrument), when it was last found whole and how
its last check went. ``jobs.fixity`` reads files back against it; quotas count what it holds.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from collections.abc import Iterable, Iterator

import peewee

from . import migrations
from .models import DB, BaseModel, utcnow

# Outcomes of a file's last check ('archived': none since the service verified it on the way in).
ARCHIVED, OK, FAILED, MISSING = "archived", "ok", "failed", "missing"

# Rows inserted per statement: far below every database's limit on bound parameters.
_BATCH = 200


class IngestArchivedFile(BaseModel):
    """One file the service archived."""

    file_id = peewee.BigIntegerField(primary_key=True)
    job_id = peewee.BigIntegerField(index=True)
    name = peewee.TextField()
    size = peewee.BigIntegerField()
    hashtype = peewee.CharField()
    hashsum = peewee.CharField()
    sha256 = peewee.CharField(null=True)
    submitter = peewee.CharField(null=True, index=True)
    project = peewee.CharField(null=True, index=True)
    instrument = peewee.CharField(null=True, index=True)
    archived = peewee.DateTimeField(default=utcnow)
    verified = peewee.DateTimeField(default=utcnow, index=True)
    checked = peewee.DateTimeField(null=True)
    outcome = peewee.CharField(default=ARCHIVED, index=True)

    class Meta:
        table_name = migrations.ARCHIVED_TABLE


class IngestFixityEvent(BaseModel):
    """One fixity check of one file (PREMIS' 'fixity check' event: when, with what algorithm,
    the digest expected and the one found, the outcome)."""

    event_id = peewee.AutoField()
    file_id = peewee.BigIntegerField(index=True)
    job_id = peewee.BigIntegerField(index=True)
    time = peewee.DateTimeField(default=utcnow)
    algorithm = peewee.CharField()
    size = peewee.BigIntegerField(default=0)
    expected = peewee.CharField()
    actual = peewee.CharField(default="")
    outcome = peewee.CharField()
    detail = peewee.TextField(default="")

    class Meta:
        table_name = migrations.FIXITY_TABLE


@dataclasses.dataclass(frozen=True)
class Owner:
    """Whom a job's files are counted against: its submitter, project and instrument."""

    submitter: str | None = None
    project: str | None = None
    instrument: str | None = None


# A file as it is recorded: (file id, path in the transaction, size, hash type, hash sum).
FileRow = tuple[int, str, int, str, str]


# The columns ``record_files`` fills, in the order of its rows (the others keep their defaults).
_RECORDED = (IngestArchivedFile.file_id, IngestArchivedFile.job_id, IngestArchivedFile.name,
             IngestArchivedFile.size, IngestArchivedFile.hashtype, IngestArchivedFile.hashsum,
             IngestArchivedFile.submitter, IngestArchivedFile.project, IngestArchivedFile.instrument,
             IngestArchivedFile.archived, IngestArchivedFile.verified, IngestArchivedFile.outcome)


def record_files(job_id: int, files: Iterable[FileRow], owner: Owner) -> int:
    """Record the files of job ``job_id`` as archived now; return how many were new (a file
    recorded before, by an earlier attempt, is left as it is)."""
    now = utcnow()
    shared = (owner.submitter, owner.project, owner.instrument, now, now, ARCHIVED)
    statements: dict[int, str] = {}
    added = 0
    rows = iter(files)
    while batch := list(itertools.islice(rows, _BATCH)):
        values = [(file_id, int(job_id), name, int(size or 0), hashtype, hashsum.lower(), *shared)
                  for file_id, name, size, hashtype, hashsum in batch]
        if len(batch) not in statements:
            statements[len(batch)] = _insert_ignoring(values)
        with DB.atomic():
            cursor = DB.execute_sql(statements[len(batch)], [value for row in values for value in row])
            added += max(cursor.rowcount, 0)
    return added


def _insert_ignoring(rows: list[tuple]) -> str:
    """The statement that inserts as many rows as ``rows`` holds, a row already recorded left as
    it is, in the database's own dialect.

    Made once per batch size and run with each batch's values: peewee building the SQL of every
    value anew cost 40 µs a file, most of recording 40,000 files.
    """
    sql, _params = IngestArchivedFile.insert_many(rows, fields=list(_RECORDED)).on_conflict_ignore().sql()
    return sql


def forget_job(job_id: int) -> int:
    """Drop the record of job ``job_id``'s files (its files left the archive again); return how many."""
    return IngestArchivedFile.delete().where(IngestArchivedFile.job_id == int(job_id)).execute()


def recorded_jobs() -> set[int]:
    """The jobs that have files in the record."""
    return {row.job_id for row in IngestArchivedFile.select(IngestArchivedFile.job_id).distinct()}


def due(*, job_id: int | None = None, verified_before: datetime.datetime | None = None,
        after_file: int = -1, limit: int = 500) -> list[IngestArchivedFile]:
    """Up to ``limit`` recorded files in file id order after ``after_file``: those of ``job_id``
    (all of them when None) last found whole before ``verified_before`` (whenever, when None)."""
    query = IngestArchivedFile.select().where(IngestArchivedFile.file_id > after_file)
    if job_id is not None:
        query = query.where(IngestArchivedFile.job_id == int(job_id))
    if verified_before is not None:
        query = query.where(IngestArchivedFile.verified < verified_before)
    return list(query.order_by(IngestArchivedFile.file_id).limit(limit))


def walk_due(**criteria) -> Iterator[IngestArchivedFile]:
    """Every file ``due`` selects, a page at a time (never the whole record in memory)."""
    after = -1
    while page := due(after_file=after, **criteria):
        yield from page
        after = page[-1].file_id


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one fixity check of one file."""

    file_id: int
    job_id: int
    name: str
    size: int
    algorithm: str
    expected: str
    actual: str
    outcome: str
    detail: str = ""
    sha256: str | None = None

    @property
    def passed(self) -> bool:
        """Whether the bytes were found whole."""
        return self.outcome == OK


def record_check(check: Check) -> None:
    """Keep ``check`` as an event and as the file's last outcome (a pass also as when it was last
    found whole, and its SHA-256 if it had none)."""
    now = utcnow()
    fields: dict = {IngestArchivedFile.checked: now, IngestArchivedFile.outcome: check.outcome}
    if check.outcome == OK:
        fields[IngestArchivedFile.verified] = now
        if check.sha256:
            fields[IngestArchivedFile.sha256] = check.sha256
    with DB.atomic():
        IngestArchivedFile.update(fields).where(IngestArchivedFile.file_id == check.file_id).execute()
        IngestFixityEvent.insert(file_id=check.file_id, job_id=check.job_id, time=now, algorithm=check.algorithm,
                                 size=check.size, expected=check.expected, actual=check.actual, outcome=check.outcome,
                                 detail=check.detail[:2000]).execute()


def events_of(job_id: int) -> list[IngestFixityEvent]:
    """The fixity checks of job ``job_id``'s files, oldest first."""
    return list(IngestFixityEvent.select().where(IngestFixityEvent.job_id == int(job_id))
                .order_by(IngestFixityEvent.event_id))


def failing_jobs(job_ids: Iterable[int]) -> set[int]:
    """Which of ``job_ids`` have a file whose last check failed (or found it missing)."""
    ids = [int(job_id) for job_id in job_ids]
    if not ids:
        return set()
    query = (IngestArchivedFile.select(IngestArchivedFile.job_id).distinct()
             .where(IngestArchivedFile.job_id.in_(ids), IngestArchivedFile.outcome.in_([FAILED, MISSING])))
    return {row.job_id for row in query}


def failing_files(job_id: int, limit: int = 100) -> list[dict]:
    """The first ``limit`` files of job ``job_id`` whose last check failed or found them missing,
    with that check's digests."""
    rows = (IngestArchivedFile.select().where(IngestArchivedFile.job_id == int(job_id),
                                              IngestArchivedFile.outcome.in_([FAILED, MISSING]))
            .order_by(IngestArchivedFile.file_id).limit(limit))
    failing = []
    for row in rows:
        last = (IngestFixityEvent.select().where(IngestFixityEvent.file_id == row.file_id)
                .order_by(IngestFixityEvent.event_id.desc()).first())
        failing.append({"file_id": row.file_id, "path": row.name, "outcome": row.outcome,
                        "checked": row.checked.isoformat() + "Z" if row.checked else None,
                        "algorithm": last.algorithm if last else row.hashtype,
                        "expected": last.expected if last else row.hashsum,
                        "actual": last.actual if last else "", "detail": last.detail if last else ""})
    return failing


def oldest_verification() -> datetime.datetime | None:
    """When the file found whole longest ago was last found whole (None with no record)."""
    return IngestArchivedFile.select(peewee.fn.MIN(IngestArchivedFile.verified)).scalar()


def mark_failed(file_id: int, detail: str, algorithm: str = "", actual: str = "") -> bool:
    """Record that a reader of file ``file_id`` (a cart) found it not matching its digest; False
    when the file is not in the record."""
    row = IngestArchivedFile.get_or_none(IngestArchivedFile.file_id == int(file_id))
    if row is None:
        return False
    record_check(Check(row.file_id, row.job_id, row.name, row.size, algorithm or row.hashtype, row.hashsum, actual,
                       FAILED, detail))
    return True
