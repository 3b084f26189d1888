"""Small helpers kept under their published names."""

from __future__ import annotations

import datetime
from typing import Any

from .config import parse_size

__all__ = ["create_state_response", "get_unique_id", "parse_size"]


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "")


def create_state_response(record) -> dict[str, Any]:
    """Create the state response body from a record."""
    return {
        "job_id": int(record.job_id),
        "state": record.state,
        "task": record.task,
        "task_percent": str(float(record.task_percent or 0)),
        "complete": bool(record.complete),
        "updated": _timestamp(record.updated),
        "created": _timestamp(record.created),
        "exception": str(record.exception or ""),
    }


def get_unique_id(id_range: int, mode: str) -> int:
    """Return the first of ``id_range`` new ids of ``mode`` from the uniqueid service."""
    from .bootstrap import runtime

    return runtime().peers.uniqueid.reserve(int(id_range), mode)
