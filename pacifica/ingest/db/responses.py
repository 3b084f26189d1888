"""The JSON a client reads about a job: its state, as ``GET /get_state`` answers, and its history."""

from __future__ import annotations

import datetime
from typing import Any

from ...core.redact import public_text


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
        "exception": public_text(record.exception or ""),
        # Not in the published answer: how far the current transfer is.
        "bytes_done": int(getattr(record, "bytes_done", 0) or 0),
        "bytes_total": int(getattr(record, "bytes_total", 0) or 0),
        "files_done": int(getattr(record, "files_done", 0) or 0),
        "files_total": int(getattr(record, "files_total", 0) or 0),
    }


def event_response(event) -> dict[str, Any]:
    """One entry of a job's history as JSON."""
    return {
        "time": _timestamp(event.time),
        "state": event.state,
        "task": event.task,
        "task_percent": str(float(event.task_percent or 0)),
        "message": public_text(event.message or ""),
        "operator": event.operator,
    }
