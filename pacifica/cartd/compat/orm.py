"""The published ``orm`` module of cartd: the cart models and ``OrmSync``, the schema upgrader."""

from __future__ import annotations

from typing import ClassVar

from ...core.database import connect_blocking
from ..db import migrations
from ..db.models import DB, Cart, CartBase, CartSystem, CartTasks, File

__all__ = ["DB", "Cart", "CartBase", "CartSystem", "CartTasks", "File", "OrmSync"]


class OrmSync:
    """Special module for syncing the orm: the published face of ``migrations``.

    ``versions`` lists the schema versions in order; ``update_tables()`` runs every step from
    the database's version to the newest.
    """

    versions: ClassVar[list[tuple[int, int]]] = list(migrations.VERSIONS[1:])

    @staticmethod
    def dbconn_blocking(attempts: int = 10, wait: float = 20) -> None:
        """Wait for the db connection."""
        connect_blocking(DB, attempts, wait)

    @staticmethod
    def create_tables() -> tuple[int, int]:
        """Create the tables if they don't exist (at the newest version)."""
        migrations.SCHEMA.upgrade(DB.obj)
        return CartSystem.get_version()

    @classmethod
    def update_0_1_to_1_0(cls) -> None:
        """Update by adding the boolean column."""
        migrations.SCHEMA.run_step(DB.obj, (0, 1))

    @classmethod
    def update_1_0_to_2_0(cls) -> None:
        """Update by adding the cart tasks table."""
        migrations.SCHEMA.run_step(DB.obj, (1, 0))

    @classmethod
    def update_tables(cls) -> tuple[int, int]:
        """Update the database to the current version."""
        migrations.SCHEMA.upgrade(DB.obj)
        return CartSystem.get_version()
