"""A database schema kept at a version, and the ordered steps that bring it forward.

The version lives in a two-row table, ``('major', M)`` and ``('minor', m)``, as the published
Pacifica services keep it. Each service declares its own table and steps; ``upgrade`` runs the
steps from the recorded version on, one process at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator

import peewee

from .database import discard
from .errors import ConfigError

logger = logging.getLogger(__name__)

Version = tuple[int, int]
Step = tuple[Version, Version, Callable[[peewee.Database], None]]


class SchemaVersion(peewee.Model):
    """One part (``major`` or ``minor``) of a database's schema version."""

    part = peewee.CharField(primary_key=True)
    value = peewee.IntegerField(default=-1)


def _version_model(database: peewee.Database, table: str) -> type[SchemaVersion]:
    class ServiceSchemaVersion(SchemaVersion):
        class Meta:
            table_name = table

    ServiceSchemaVersion.bind(database)
    return ServiceSchemaVersion


@dataclasses.dataclass(frozen=True)
class VersionedSchema:
    """A service's schema: where its version is kept, its steps in order, its upgrade lock."""

    version_table: str
    steps: tuple[Step, ...]
    lock_name: str

    @property
    def versions(self) -> tuple[Version, ...]:
        """Every version, oldest first."""
        return tuple([self.steps[0][0]] + [target for _source, target, _step in self.steps])

    @property
    def latest(self) -> Version:
        """The version this code writes."""
        return self.versions[-1]

    def get_version(self, database: peewee.Database) -> Version:
        """The version recorded in ``database``; (0, 0) when it has none."""
        if not database.table_exists(self.version_table):
            return (0, 0)
        model = _version_model(database, self.version_table)
        rows = {row.part: row.value for row in model.select()}
        return (rows.get("major", 0), rows.get("minor", 0))

    def record_version(self, database: peewee.Database, version: Version) -> None:
        """Write ``version`` as the database's version."""
        model = _version_model(database, self.version_table)
        database.create_tables([model], safe=True)
        with database.atomic():
            for part, value in zip(("major", "minor"), version, strict=True):
                if model.select().where(model.part == part).exists():
                    model.update(value=value).where(model.part == part).execute()
                else:
                    model.create(part=part, value=value)

    @contextlib.contextmanager
    def _lock(self, database: peewee.Database) -> Iterator[None]:
        """Serialise concurrent upgrades (a web node and workers starting together)."""
        if isinstance(database, peewee.PostgresqlDatabase):
            database.execute_sql(f"SELECT pg_advisory_lock(hashtext('{self.lock_name}'))")
            try:
                yield
            finally:
                database.execute_sql(f"SELECT pg_advisory_unlock(hashtext('{self.lock_name}'))")
        elif isinstance(database, peewee.MySQLDatabase):
            database.execute_sql(f"SELECT GET_LOCK('{self.lock_name}', 600)")
            try:
                yield
            finally:
                database.execute_sql(f"SELECT RELEASE_LOCK('{self.lock_name}')")
        else:
            yield

    def upgrade(self, database: peewee.Database, target: Version | None = None) -> list[Version]:
        """Run every step from the recorded version up to ``target`` (the latest); return the
        versions reached."""
        target = target or self.latest
        reached = []
        with self._lock(database):
            version = self.get_version(database)
            if version not in self.versions:
                raise peewee.DatabaseError(f"unknown schema version {version[0]}.{version[1]}")
            for source, dest, step in self.steps:
                if source != version or dest > target:
                    continue
                logger.info("migrating schema %d.%d -> %d.%d", *source, *dest)
                step(database)
                self.record_version(database, dest)
                version = dest
                reached.append(dest)
        return reached

    def run_step(self, database: peewee.Database, source: Version) -> None:
        """Run the one step that starts at ``source`` and record its version."""
        for step_source, dest, step in self.steps:
            if step_source == source:
                step(database)
                self.record_version(database, dest)

    def is_safe(self, version: Version) -> bool:
        """Whether this code can use a database at ``version`` (same major version)."""
        return version[0] == self.latest[0]


def ensure_schema(schema: VersionedSchema, database: peewee.Database, tables: tuple[str, ...],
                  command: str, needed: Version | None = None) -> Version:
    """Make ``database`` ready to serve, or raise a one-line ``ConfigError``; return its version.

    An empty database (none of ``tables``) gets the whole schema, so a first start needs no
    ``dbsync``; a database holding anything must already be at a version this code can use (and
    at least ``needed``). ``command`` names the admin tool that upgrades it. The connection is
    closed afterwards, for good: a pool would keep it open, and uWSGI forks after this, so that
    every worker process would take the same socket from its copy of the pool.
    """
    try:
        if not any(database.table_exists(table) for table in tables):
            schema.upgrade(database)
            logger.info("created the schema (version %d.%d) in an empty database", *schema.latest)
        version = schema.get_version(database)
    finally:
        discard(database)
    needed = needed or (schema.latest[0], 0)
    if not schema.is_safe(version) or version < needed:
        raise ConfigError(
            f"database schema is version {version[0]}.{version[1]}, this code needs {needed[0]}.{needed[1]} "
            f"or a later {needed[0]}.x: run '{command} dbsync' first")
    return version
