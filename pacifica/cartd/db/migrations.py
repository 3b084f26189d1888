"""Schema versions of the cart database and the ordered steps between them.

The tables and version rows are those of the published pacifica-cartd, so a database it
created is taken over as it is: ``cartsystem`` holds the version, ``cart`` and ``file`` arrived
in 0.1, ``cart.bundle`` in 1.0 and ``carttasks`` in 2.0. Each step declares its tables as they
were at its version and can run again if it was interrupted.
"""

from __future__ import annotations

import datetime

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from ...core.auth.tokens import create_table as create_token_table
from ...core.schema import Version, VersionedSchema

VERSION_TABLE = "cartsystem"


def _now() -> datetime.datetime:
    return datetime.datetime.now()


class _CartV01(peewee.Model):
    id = peewee.AutoField()
    cart_uid = peewee.CharField(default="1")
    bundle_path = peewee.CharField(default="")
    creation_date = peewee.DateTimeField(default=_now)
    updated_date = peewee.DateTimeField(default=_now)
    deleted_date = peewee.DateTimeField(null=True)
    status = peewee.TextField(default="waiting")
    error = peewee.TextField(default="")

    class Meta:
        table_name = "cart"


class _FileV01(peewee.Model):
    id = peewee.AutoField()
    cart = peewee.ForeignKeyField(_CartV01, field="id")
    file_name = peewee.CharField(default="")
    bundle_path = peewee.CharField(default="")
    hash_type = peewee.CharField(null=True)
    hash_value = peewee.CharField(null=True)
    status = peewee.TextField(default="waiting")
    error = peewee.TextField(default="")

    class Meta:
        table_name = "file"


class _CartTasksV20(peewee.Model):
    id = peewee.AutoField()
    cart_id = peewee.ForeignKeyField(_CartV01, index=True)
    celery_task_id = peewee.CharField(default="")

    class Meta:
        table_name = "carttasks"


def step_0_0_to_0_1(database: peewee.Database) -> None:
    """Create the cart and file tables (without ``cart.bundle``)."""
    with database.bind_ctx([_CartV01, _FileV01]):
        database.create_tables([_CartV01, _FileV01], safe=True)


def step_0_1_to_1_0(database: peewee.Database) -> None:
    """Add the boolean ``cart.bundle`` column."""
    if "bundle" in {column.name for column in database.get_columns("cart")}:
        return
    migrator = SchemaMigrator.from_database(database)
    with migrator.migration_context():
        migrate(migrator.add_column("cart", "bundle", peewee.BooleanField(default=False, null=True)))


def step_1_0_to_2_0(database: peewee.Database) -> None:
    """Add the table of each cart's Celery tasks."""
    with database.bind_ctx([_CartV01, _CartTasksV20]):
        database.create_tables([_CartTasksV20], safe=True)


TOKEN_TABLE = "carttoken"


def step_2_0_to_2_1(database: peewee.Database) -> None:
    """Add who made each cart (``cart.owner``, NULL for older carts) and the API tokens.

    A minor version: the published code ignores both.
    """
    if "owner" not in {column.name for column in database.get_columns("cart")}:
        migrator = SchemaMigrator.from_database(database)
        with migrator.migration_context():
            migrate(migrator.add_column("cart", "owner", peewee.CharField(null=True)))
    create_token_table(database, TOKEN_TABLE)


SCHEMA = VersionedSchema(VERSION_TABLE, (
    ((0, 0), (0, 1), step_0_0_to_0_1),
    ((0, 1), (1, 0), step_0_1_to_1_0),
    ((1, 0), (2, 0), step_1_0_to_2_0),
    ((2, 0), (2, 1), step_2_0_to_2_1),
), "pacifica-cartd-migrate")
VERSIONS: tuple[Version, ...] = SCHEMA.versions
LATEST: Version = SCHEMA.latest


# Tables whose presence means the database is this service's (an empty one gets the schema).
TABLES = (VERSION_TABLE, "cart", "file", "carttasks")


def is_empty(database: peewee.Database) -> bool:
    """Tell whether ``database`` holds none of this service's tables."""
    return not any(database.table_exists(table) for table in TABLES)
