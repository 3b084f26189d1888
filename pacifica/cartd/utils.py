"""The published ``utils`` module of cartd: ``Cartutils`` and ``parse_size``."""

from __future__ import annotations

from ..core.settings import parse_size
from .app.bootstrap import runtime
from .compat.published import PublishedChecks
from .volume.store import CartStore

__all__ = ["Cartutils", "parse_size"]


class Cartutils(PublishedChecks, CartStore):
    """Class used to provide utility functions for the cart to use."""

    def __init__(self, volume_path: str | None = None, lru_buffer_time: float | None = None,
                 lru_purge: bool = True) -> None:
        """Default constructor (the settings' volume, LRU buffer time and purge unless given)."""
        if volume_path is None or lru_buffer_time is None:
            settings = runtime().settings
            volume_path = settings.volume_path if volume_path is None else volume_path
            lru_buffer_time = settings.lru_buffer_time if lru_buffer_time is None else lru_buffer_time
            lru_purge = settings.lru_purge
        super().__init__(volume_path, lru_buffer_time, lru_purge)
