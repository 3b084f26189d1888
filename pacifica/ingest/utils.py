"""The published ``utils`` module: small helpers under their published names."""

from __future__ import annotations

from ..core.settings import parse_size
from .app.bootstrap import runtime
from .db.responses import create_state_response

__all__ = ["create_state_response", "get_unique_id", "parse_size"]


def get_unique_id(id_range: int, mode: str) -> int:
    """Return the first of ``id_range`` new ids of ``mode`` from the uniqueid service."""
    return runtime().peers.uniqueid.reserve(int(id_range), mode)
