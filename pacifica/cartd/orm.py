"""The published ``orm`` module of cartd: the cart models and ``OrmSync``, the schema upgrader.

They live in ``db.models`` and ``compat.orm``; this face keeps every documented name
importable from here.
"""

from __future__ import annotations

from .compat.orm import DB, Cart, CartBase, CartSystem, CartTasks, File, OrmSync

__all__ = ["DB", "Cart", "CartBase", "CartSystem", "CartTasks", "File", "OrmSync"]
