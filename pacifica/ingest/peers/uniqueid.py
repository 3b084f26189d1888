"""The uniqueid service: ``GET {url}/getid?range=N&mode=M`` answers ``{"startIndex": i, ...}``."""

from __future__ import annotations

import requests

from ..errors import PeerRejected
from .base import call, json_body

PEER = "uniqueid"


class HttpUniqueId:
    """Reserve id ranges from the Pacifica UniqueID service."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` ids of ``mode`` and return the first."""
        url = f"{self.url}/getid"
        response = call(self.session, PEER, "GET", url, params={"range": count, "mode": mode})
        body = json_body(PEER, url, response)
        start = body.get("startIndex") if isinstance(body, dict) else None
        if not isinstance(start, int) or isinstance(start, bool):
            raise PeerRejected(PEER, url, f"answer has no integer startIndex: {body!r}")
        return start


class EmbeddedUniqueId:
    """Reserve id ranges from this service's own database (safe under concurrent workers).

    The first range of 'upload_job' starts after the highest job id already recorded, so a
    database taken over from a deployment that used the UniqueID service keeps its jobs apart.
    """

    url = "embedded:"

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` ids of ``mode`` and return the first."""
        import peewee

        from ..orm import DB, IngestState, IngestUniqueId

        if count < 1:
            raise PeerRejected(PEER, self.url, f"range must be at least 1, got {count}")
        for _attempt in range(5):
            try:
                with DB.atomic():
                    # The UPDATE takes the row's write lock first, so concurrent reservations queue up.
                    bumped = (IngestUniqueId.update(next_index=IngestUniqueId.next_index + count)
                              .where(IngestUniqueId.mode == mode).execute())
                    if bumped:
                        return IngestUniqueId.get_by_id(mode).next_index - count
                    first = 1
                    if mode == "upload_job":
                        first = (IngestState.select(peewee.fn.MAX(IngestState.job_id)).scalar() or 0) + 1
                    IngestUniqueId.insert(mode=mode, next_index=first + count).execute()
                    return first
            except peewee.IntegrityError:
                continue  # another worker created this mode's row first: bump it instead
        raise PeerRejected(PEER, self.url, f"could not reserve ids of mode {mode!r}")
