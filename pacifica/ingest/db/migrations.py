"""Schema versions of the ingest database and the ordered steps between them.

Each step declares the tables as they were at its version (frozen, independent of the live
models in ``orm``), is safe to run again if it was interrupted (MySQL DDL is not
transactional), and records its target version when it finishes. The version lives in the
``ingeststatesystem`` table as the rows ``('major', M)`` and ``('minor', m)``, exactly as the
published service keeps it, so databases it created are taken over as they are.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from ...core.auth.tokens import create_table as create_token_table
from ...core.schema import Version, VersionedSchema

logger = logging.getLogger(__name__)

VERSION_TABLE = "ingeststatesystem"
STATE_TABLE = "ingeststate"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def get_version(database: peewee.Database) -> Version:
    """Return the schema version recorded in ``database``; (0, 0) when it has none."""
    return SCHEMA.get_version(database)


def _columns(database: peewee.Database, table: str) -> set[str]:
    return {column.name for column in database.get_columns(table)}


def step_0_0_to_1_0(database: peewee.Database) -> None:
    """Create the job state table (without ``complete``, which arrived in 2.0)."""

    class IngestStateV1(peewee.Model):
        job_id = peewee.BigIntegerField(primary_key=True, column_name="id")
        state = peewee.CharField()
        task = peewee.CharField()
        task_percent = peewee.DecimalField()
        exception = peewee.TextField(default="")
        created = peewee.DateTimeField(default=_utcnow)
        updated = peewee.DateTimeField(default=_utcnow)

        class Meta:
            table_name = STATE_TABLE

    IngestStateV1.bind(database)
    database.create_tables([IngestStateV1], safe=True)


def step_1_0_to_2_0(database: peewee.Database) -> None:
    """Add the boolean ``complete`` column (published 0.3.4)."""
    if "complete" in _columns(database, STATE_TABLE):
        return
    migrator = SchemaMigrator.from_database(database)
    with migrator.migration_context():
        migrate(migrator.add_column(STATE_TABLE, "complete", peewee.BooleanField(default=False)))


UNIQUEID_TABLE = "ingestuniqueid"
METADATA_TABLE = "ingestmetadata"


def step_2_0_to_2_1(database: peewee.Database) -> None:
    """Add the tables of the embedded uniqueid and metadata peers.

    A minor version: the published 0.4.x code ignores these tables, so it still accepts the
    database (its safety check compares major versions only).
    """

    class IngestUniqueIdV1(peewee.Model):
        mode = peewee.CharField(primary_key=True)
        next_index = peewee.BigIntegerField()

        class Meta:
            table_name = UNIQUEID_TABLE

    class IngestMetadataV1(peewee.Model):
        job_id = peewee.BigIntegerField(primary_key=True)
        document = peewee.TextField()
        created = peewee.DateTimeField(default=_utcnow)

        class Meta:
            table_name = METADATA_TABLE

    for model in (IngestUniqueIdV1, IngestMetadataV1):
        model.bind(database)
    database.create_tables([IngestUniqueIdV1, IngestMetadataV1], safe=True)


EVENT_TABLE = "ingeststateevent"
PROGRESS_COLUMNS = ("bytes_done", "bytes_total", "files_done", "files_total")
CALLBACK_TABLE = "ingestcallback"


def step_2_1_to_2_2(database: peewee.Database) -> None:
    """Add the job history, the progress counters and the completion callbacks.

    A minor version again: the new ``ingeststate`` columns may be NULL (read as 0), so rows that
    the published 0.4.x code inserts without them are still valid. Every existing job starts its
    history with the state it had at the upgrade.
    """

    class IngestStateEventV1(peewee.Model):
        event_id = peewee.AutoField()
        job_id = peewee.BigIntegerField(index=True)
        time = peewee.DateTimeField(default=_utcnow)
        state = peewee.CharField()
        task = peewee.CharField()
        task_percent = peewee.DecimalField()
        message = peewee.TextField(default="")
        operator = peewee.CharField(null=True)

        class Meta:
            table_name = EVENT_TABLE

    class IngestCallbackV1(peewee.Model):
        job_id = peewee.BigIntegerField(primary_key=True)
        url = peewee.TextField()
        status = peewee.CharField(default="waiting")
        attempts = peewee.IntegerField(default=0)
        last_error = peewee.TextField(default="")
        delivered = peewee.DateTimeField(null=True)

        class Meta:
            table_name = CALLBACK_TABLE

    have = _columns(database, STATE_TABLE)
    missing = [name for name in PROGRESS_COLUMNS if name not in have]
    if missing:
        migrator = SchemaMigrator.from_database(database)
        with migrator.migration_context():
            migrate(*[migrator.add_column(STATE_TABLE, name, peewee.BigIntegerField(null=True)) for name in missing])
    fresh = not database.table_exists(EVENT_TABLE)
    for model in (IngestStateEventV1, IngestCallbackV1):
        model.bind(database)
    database.create_tables([IngestStateEventV1, IngestCallbackV1], safe=True)
    if fresh:
        database.execute_sql(
            f"INSERT INTO {EVENT_TABLE} (job_id, time, state, task, task_percent, message) "
            f"SELECT id, updated, state, task, task_percent, exception FROM {STATE_TABLE}")


def step_2_2_to_2_3(database: peewee.Database) -> None:
    """Add who submitted each job (``ingeststate.submitter``), for the jobs page and its filter.

    A minor version: the column may be NULL (jobs from before, and rows the published code inserts).
    """
    if "submitter" not in _columns(database, STATE_TABLE):
        migrator = SchemaMigrator.from_database(database)
        with migrator.migration_context():
            migrate(migrator.add_column(STATE_TABLE, "submitter", peewee.CharField(null=True)))


TOKEN_TABLE = "ingesttoken"


def step_2_3_to_2_4(database: peewee.Database) -> None:
    """Add the API tokens (``ingesttoken``: a digest of each, its user, scopes, expiry, last use).

    A minor version: the published code ignores the table.
    """
    create_token_table(database, TOKEN_TABLE)


ARCHIVED_TABLE = "ingestarchivedfile"
FIXITY_TABLE = "ingestfixityevent"
QUOTA_TABLE = "ingestquota"
HOLD_TABLE = "ingestquotahold"


def step_2_4_to_2_5(database: peewee.Database) -> None:
    """Add the record of what was archived (``ingestarchivedfile``: each file's job, size,
    declared digest, owner and when it was last verified), the fixity checks made of it
    (``ingestfixityevent``), the quotas (``ingestquota``) and what uploads in flight hold of
    them (``ingestquotahold``).

    A minor version: the published code ignores these tables. A database upgraded from it fills the
    record with ``pacifica-ingest-cmd fixity --backfill``.
    """

    class IngestArchivedFileV1(peewee.Model):
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
        archived = peewee.DateTimeField(default=_utcnow)
        # The last time its bytes were found whole (at first, when they were archived: the
        # service checked them then), the last check of any outcome, and that outcome.
        verified = peewee.DateTimeField(default=_utcnow, index=True)
        checked = peewee.DateTimeField(null=True)
        outcome = peewee.CharField(default="archived", index=True)

        class Meta:
            table_name = ARCHIVED_TABLE

    class IngestFixityEventV1(peewee.Model):
        event_id = peewee.AutoField()
        file_id = peewee.BigIntegerField(index=True)
        job_id = peewee.BigIntegerField(index=True)
        time = peewee.DateTimeField(default=_utcnow)
        algorithm = peewee.CharField()
        size = peewee.BigIntegerField(default=0)
        expected = peewee.CharField()
        actual = peewee.CharField(default="")
        outcome = peewee.CharField()
        detail = peewee.TextField(default="")

        class Meta:
            table_name = FIXITY_TABLE

    class IngestQuotaV1(peewee.Model):
        scope = peewee.CharField()
        name = peewee.CharField()
        max_bytes = peewee.BigIntegerField(null=True)
        max_files = peewee.BigIntegerField(null=True)
        period = peewee.BigIntegerField(null=True)
        max_uploads = peewee.IntegerField(null=True)
        updated = peewee.DateTimeField(default=_utcnow)
        operator = peewee.CharField(null=True)

        class Meta:
            table_name = QUOTA_TABLE
            primary_key = peewee.CompositeKey("scope", "name")

    class IngestQuotaHoldV1(peewee.Model):
        job_id = peewee.BigIntegerField(primary_key=True)
        submitter = peewee.CharField(null=True, index=True)
        project = peewee.CharField(null=True, index=True)
        instrument = peewee.CharField(null=True, index=True)
        bytes = peewee.BigIntegerField(default=0)
        files = peewee.BigIntegerField(default=0)
        created = peewee.DateTimeField(default=_utcnow)

        class Meta:
            table_name = HOLD_TABLE

    models = (IngestArchivedFileV1, IngestFixityEventV1, IngestQuotaV1, IngestQuotaHoldV1)
    for model in models:
        model.bind(database)
    database.create_tables(models, safe=True)


S3_KEY_TABLE = "ingests3key"


def step_2_5_to_2_6(database: peewee.Database) -> None:
    """Add the S3 door's access keys (``ingests3key``): each key's id, the API token it belongs
    to (its user, expiry and revocation) and its secret, sealed with the service's key file.

    A minor version: the published code ignores the table.
    """

    class IngestS3KeyV1(peewee.Model):
        access_key = peewee.CharField(max_length=64, primary_key=True)
        token_id = peewee.BigIntegerField(index=True)
        sealed_secret = peewee.TextField()

        class Meta:
            table_name = S3_KEY_TABLE

    IngestS3KeyV1.bind(database)
    database.create_tables([IngestS3KeyV1], safe=True)


STEPS: tuple[tuple[Version, Version, Callable[[peewee.Database], None]], ...] = (
    ((0, 0), (1, 0), step_0_0_to_1_0),
    ((1, 0), (2, 0), step_1_0_to_2_0),
    ((2, 0), (2, 1), step_2_0_to_2_1),
    ((2, 1), (2, 2), step_2_1_to_2_2),
    ((2, 2), (2, 3), step_2_2_to_2_3),
    ((2, 3), (2, 4), step_2_3_to_2_4),
    ((2, 4), (2, 5), step_2_4_to_2_5),
    ((2, 5), (2, 6), step_2_5_to_2_6),
)

SCHEMA = VersionedSchema(VERSION_TABLE, STEPS, "pacifica-ingest-migrate")
VERSIONS: tuple[Version, ...] = SCHEMA.versions
LATEST: Version = SCHEMA.latest


def upgrade(database: peewee.Database, target: Version = LATEST) -> list[Version]:
    """Run every step from the recorded version up to ``target``; return the versions reached."""
    return SCHEMA.upgrade(database, target)


def is_safe(version: Version) -> bool:
    """Tell whether this code can use a database at ``version`` (same major version)."""
    return SCHEMA.is_safe(version)


# Tables whose presence means the database is this service's (an empty one gets the schema).
TABLES = (VERSION_TABLE, STATE_TABLE)


def is_empty(database: peewee.Database) -> bool:
    """Tell whether ``database`` holds none of this service's tables."""
    return not any(database.table_exists(table) for table in TABLES)
