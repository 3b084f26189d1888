"""Whether a bundle may come in: the one rule set for a classic ``/upload`` body, a resumable
upload's creation, a length given later, a set of partial uploads and the final that joins
them. The web resources ask before anything is created and answer the refusal's ``status``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..common.errors import IngestError
from ..volume.resumable import Upload
from ..volume.spool import Spool


class Refused(IngestError):
    """The bundle may not come in; ``status`` is the HTTP status that says why (413: over the size
    limit, 507: no room on the volume, 429: too many partial uploads open)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def within_limit(length: int, limit: int, what: str = "upload") -> None:
    """413 for a bundle of ``length`` bytes above ``limit`` (0: no limit)."""
    if limit and length > limit:
        raise Refused(f"the {what} of {length} bytes is larger than the {limit} byte limit", 413)


def fits(length: int, spool: Spool, what: str = "upload") -> None:
    """507 for a bundle of ``length`` bytes that the volume has no room for."""
    free = spool.free_space()
    if length > free:
        raise Refused(f"the volume has {free} bytes free, the {what} needs {length}", 507)


def bundle(length: int, limit: int, spool: Spool, what: str = "upload") -> None:
    """A bundle of ``length`` bytes: within the size limit, and room for it on the volume."""
    within_limit(length, limit, what)
    fits(length, spool, what)


def partial(user: str, length: int | None, open_parts: Sequence[Upload], max_partials: int, limit: int) -> None:
    """A new partial upload of ``user``: at most ``max_partials`` open at once, and (with a size
    ``limit``) at most that many bytes declared across them, since they make one bundle."""
    if len(open_parts) >= max_partials:
        raise Refused(f"{user} has {len(open_parts)} partial uploads open, the most allowed "
                      "([ingest] max_partials); concatenate or end some first", 429)
    if limit and length is not None:
        declared = sum(part.length or 0 for part in open_parts)
        if declared + length > limit:
            raise Refused(f"{user}'s open partial uploads would hold {declared + length} bytes, more than the "
                          f"{limit} byte limit of one bundle", 413)
