"""Model helpers both services' published ORM classes offer."""

from __future__ import annotations

from typing import Any, ClassVar

from .schema import VersionedSchema


class ConnectionMethods:
    """The class methods the published models carry: ``atomic``, ``database_connect``,
    ``database_close`` (mixed into a ``peewee.Model``)."""

    _meta: ClassVar[Any]  # the peewee model's options, set by its metaclass

    @classmethod
    def atomic(cls):
        """Get the atomic context or decorator."""
        return cls._meta.database.atomic()

    @classmethod
    def database_connect(cls) -> None:
        """Make sure the database is connected (an open connection is reused)."""
        cls._meta.database.connect(reuse_if_open=True)

    @classmethod
    def database_close(cls) -> None:
        """Close the database connection; closing a closed one is not an error."""
        if not cls._meta.database.is_closed():
            cls._meta.database.close()


class SchemaVersionMethods:
    """The class methods of the published schema-version models (mixed into a ``peewee.Model``
    whose class attribute ``schema`` is the service's ``VersionedSchema``)."""

    _meta: ClassVar[Any]  # the peewee model's options, set by its metaclass
    schema: ClassVar[VersionedSchema]

    @classmethod
    def get_or_create_version(cls) -> tuple[int, int]:
        """Set or create the current version of the schema."""
        cls.schema.record_version(cls._meta.database, cls.schema.latest)
        return cls.schema.latest

    @classmethod
    def get_version(cls) -> tuple[int, int]:
        """Get the current version as a tuple."""
        return cls.schema.get_version(cls._meta.database)

    @classmethod
    def is_equal(cls) -> bool:
        """Check to see if schema version matches code version."""
        return cls.get_version() == cls.schema.latest

    @classmethod
    def is_safe(cls) -> bool:
        """Check to see if the schema version is safe for the code."""
        return cls.schema.is_safe(cls.get_version())
