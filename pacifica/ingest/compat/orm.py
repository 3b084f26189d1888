"""The published ``orm`` module: the job state models and ``OrmSync``, the schema upgrader.

The models and the state functions live in ``models``; ``OrmSync`` drives ``migrations`` under
the names the published service gave its steps.
"""

from __future__ import annotations

from typing import ClassVar

from ...core.database import connect_blocking
from ..app.bootstrap import runtime
from ..db import migrations
from ..db.models import (
    COMPLETION_HOOKS,
    DB,
    SCHEMA_MAJOR,
    SCHEMA_MINOR,
    BaseModel,
    IngestCallback,
    IngestMetadata,
    IngestState,
    IngestStateEvent,
    IngestStateSystem,
    IngestUniqueId,
    Progress,
    claim_job,
    read_history,
    read_state,
    update_state,
    utcnow,
)

__all__ = ["COMPLETION_HOOKS", "DB", "SCHEMA_MAJOR", "SCHEMA_MINOR", "BaseModel", "IngestCallback", "IngestMetadata",
           "IngestState", "IngestStateEvent", "IngestStateSystem", "IngestUniqueId", "OrmSync", "Progress",
           "claim_job", "read_history", "read_state", "update_state", "utcnow"]


class OrmSync:
    """Schema synchronisation, kept under its published name.

    ``versions`` lists the schema versions in order; ``update_tables()`` runs every step from
    the database's version to the newest. The steps themselves live in ``migrations``.
    """

    versions: ClassVar[list[tuple[int, int]]] = list(migrations.VERSIONS)

    @staticmethod
    def dbconn_blocking() -> None:
        """Wait for the db connection, honouring ``connect_attempts`` and ``connect_wait``."""
        settings = runtime().settings
        connect_blocking(DB, settings.connect_attempts, settings.connect_wait)

    @classmethod
    def update_0_0_to_1_0(cls) -> None:
        """Update by creating the table."""
        cls._step((0, 0))

    @classmethod
    def update_1_0_to_2_0(cls) -> None:
        """Update by adding the boolean column."""
        cls._step((1, 0))

    @classmethod
    def update_2_0_to_2_1(cls) -> None:
        """Update by adding the tables of the embedded uniqueid and metadata peers."""
        cls._step((2, 0))

    @classmethod
    def update_2_1_to_2_2(cls) -> None:
        """Update by adding the job history, progress columns and completion callbacks."""
        cls._step((2, 1))

    @classmethod
    def update_2_2_to_2_3(cls) -> None:
        """Update by adding who submitted each job."""
        cls._step((2, 2))

    @staticmethod
    def _step(source: tuple[int, int]) -> None:
        migrations.SCHEMA.run_step(DB, source)

    @classmethod
    def update_tables(cls) -> None:
        """Update the database to the current version."""
        migrations.upgrade(DB.obj)
