"""The message of a job: what every stage receives and passes on, and what the volume keeps of it
(``<job_id>.job.json``) so that a job can be resumed after a crash."""

from __future__ import annotations

from typing import Any, TypedDict


class JobMessage(TypedDict):
    """What every stage of a job receives and passes on."""

    job_id: int
    path: str
    user: str
    move: bool


def make_message(job_id: int, path: str, user: str, move: bool = False) -> JobMessage:
    """The message every stage of a job receives."""
    return {"job_id": int(job_id), "path": str(path), "user": str(user), "move": bool(move)}


def as_message(data: Any) -> JobMessage | None:
    """``data`` (read back from the volume) as a job's message, or None if it is not one."""
    if not isinstance(data, dict):
        return None
    try:
        return make_message(data["job_id"], data["path"], data["user"], data.get("move", False))
    except (KeyError, TypeError, ValueError):
        return None
