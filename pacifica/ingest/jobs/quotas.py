"""Quotas enforced before a byte is stored, and again with the real sizes.

Every door asks here before it takes a bundle: a resumable upload's creation (its
``Upload-Length``), a length given later, a partial upload, a final concatenation, a classic
``/upload`` (its ``Content-Length``) and ``/validate`` (its document). 'load metadata' asks again
with the real sizes, project and instrument. A refusal is 413 naming the quota, its limit, what
is used and what is left (or 429 with ``Retry-After`` when a user has as many uploads receiving
bytes as their quota allows), and stores nothing: a job's admission, hold and state row are one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..common.errors import IngestError
from ..db import models
from ..db.archived import Owner
from ..db.quotas import USER, IngestQuota, Usage, hold, of, usage
from .admission import Refused

# How long a client is told to wait before trying again when it has too many uploads at once.
RETRY_AFTER_SECONDS = 30


class QuotaRefused(Refused):
    """Over a quota: 413 (bytes or files), or 429 with ``retry_after`` (uploads at once)."""

    def __init__(self, message: str, status: int = 413, retry_after: int | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class QuotaExceeded(IngestError):
    """A job's real sizes are over a quota (found by 'load metadata'; the job fails)."""


def _what(quota: IngestQuota) -> str:
    window = f" per {quota.period // 86400} days" if quota.period and quota.period % 86400 == 0 else \
        (f" per {quota.period} s" if quota.period else "")
    return f"the {quota.scope} quota of {quota.name!r}{window}"


def over(quota: IngestQuota, used: Usage, size: int | None, files: int | None, what: str) -> str | None:
    """Why adding ``size`` bytes and ``files`` files (None: not known yet) goes over ``quota``, or None."""
    if quota.max_bytes is not None and size is not None and used.total_bytes + size > quota.max_bytes:
        left = max(0, quota.max_bytes - used.total_bytes)
        return (f"{_what(quota)} has {left} bytes left of its {quota.max_bytes} byte limit ({used.bytes} archived, "
                f"{used.held_bytes} held by uploads in flight); {what} needs {size}")
    if quota.max_files is not None and files is not None and used.total_files + files > quota.max_files:
        left = max(0, quota.max_files - used.total_files)
        return (f"{_what(quota)} has {left} files left of its {quota.max_files} file limit ({used.files} archived, "
                f"{used.held_files} held by uploads in flight); {what} has {files}")
    return None


def check(owner: Owner, size: int | None, files: int | None, what: str = "the upload", *,
          besides: int | None = None, uploading: bool = False, lock: bool = False) -> None:
    """Raise ``QuotaRefused`` if ``size`` bytes and ``files`` files of ``owner`` (job ``besides``
    not counted twice) go over a quota, or, with ``uploading``, if the user already has as many
    uploads receiving bytes as their quota allows."""
    for quota in of(owner, lock=lock):
        used = usage(quota.scope, quota.name, quota.period, besides)
        if uploading and quota.scope == USER and quota.max_uploads is not None and used.uploading >= quota.max_uploads:
            raise QuotaRefused(f"{quota.name} has {used.uploading} uploads receiving bytes, the most "
                               f"{_what(quota)} allows ({quota.max_uploads}); try again when one has finished",
                               429, RETRY_AFTER_SECONDS)
        reason = over(quota, used, size, files, what)
        if reason:
            raise QuotaRefused(reason)


def admit_job(job_id: int, owner: Owner, size: int | None, *, uploading: bool = True,
              what: str = "the upload") -> None:
    """Inside the transaction that claims job ``job_id``: check ``owner``'s quotas (the rows
    locked until it ends) and hold ``size`` bytes for the job."""
    quotas = of(owner, lock=True)
    if not quotas:
        return
    hold(job_id, owner, size or 0)
    check(owner, size, None, what, besides=job_id, uploading=uploading)


def resize(job_id: int, owner: Owner, size: int) -> None:
    """A length given after the creation (``Upload-Defer-Length``): check it and hold it."""
    with models.write_transaction():
        if of(owner, lock=True):
            check(owner, size, None, "the upload", besides=job_id)
            hold(job_id, owner, size)


def commit(job_id: int, owner: Owner, size: int, files: int) -> None:
    """'load metadata' with the real sizes: raise ``QuotaExceeded`` naming the quota if the job
    does not fit; else hold its real sizes, for its real project and instrument."""
    with models.write_transaction():
        try:
            check(owner, size, files, f"job {job_id} ({size} bytes in {files} files)", besides=job_id, lock=True)
        except QuotaRefused as exc:
            raise QuotaExceeded(str(exc)) from None
        if of(owner):
            hold(job_id, owner, size, files)


def problems(owner: Owner, size: int, files: int) -> list[str]:
    """What ``/validate`` lists: each quota the document's files would go over."""
    found = []
    for quota in of(owner):
        reason = over(quota, usage(quota.scope, quota.name, quota.period), size, files,
                      f"the bundle ({size} bytes in {files} files)")
        if reason:
            found.append(f"quota: {reason}")
    return found


def report(scope_names: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Limits and usage of each (scope, name), as ``GET /quota`` answers them."""
    answer = []
    for scope, name in scope_names:
        quota = IngestQuota.get_or_none((IngestQuota.scope == scope) & (IngestQuota.name == name))
        used = usage(scope, name, quota.period if quota else None)
        limits = {key: getattr(quota, key) if quota else None
                  for key in ("max_bytes", "max_files", "max_uploads")}
        entry = {"scope": scope, "name": name, **limits, "period_seconds": quota.period if quota else None,
                 "used_bytes": used.bytes, "used_files": used.files, "held_bytes": used.held_bytes,
                 "held_files": used.held_files,
                 "left_bytes": None if limits["max_bytes"] is None else max(0, limits["max_bytes"] - used.total_bytes),
                 "left_files": None if limits["max_files"] is None else max(0, limits["max_files"] - used.total_files)}
        if scope == USER:
            entry["uploading"] = used.uploading
        answer.append(entry)
    return answer
