"""The uniqueid service: ``GET {url}/getid?range=N&mode=M`` answers ``{"startIndex": i, ...}``."""

from __future__ import annotations

import logging

import peewee
import requests

from ...core.http import call, json_body
from ..common.errors import PeerRejected, PeerUnavailable
from ..db.models import DB, IngestState, IngestUniqueId

logger = logging.getLogger(__name__)

PEER = "uniqueid"


class HttpUniqueId:
    """Reserve id ranges from the Pacifica UniqueID service, never the same id twice.

    The published uniqueid 0.5.1 reads and updates its counter without a row lock, so requests
    that overlap can get the same range. This deployment therefore asks it one request at a time
    (a row lock in this service's own database, shared by every process), and remembers the end
    of the highest range it was given for each mode: a range starting below that was handed out
    before, and is asked for again.
    """

    # How often a range that was handed out before is asked for again before giving up.
    ATTEMPTS = 10

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def _ask(self, count: int, mode: str) -> int:
        url = f"{self.url}/getid"
        response = call(self.session, PEER, "GET", url, params={"range": count, "mode": mode})
        body = json_body(PEER, url, response)
        start = body.get("startIndex") if isinstance(body, dict) else None
        if not isinstance(start, int) or isinstance(start, bool):
            raise PeerRejected(PEER, url, f"answer has no integer startIndex: {body!r}")
        return start

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` ids of ``mode`` and return the first."""

        if count < 1:
            raise PeerRejected(PEER, self.url, f"range must be at least 1, got {count}")
        key = f"{HIGH_WATER_PREFIX}{mode}"
        for _attempt in range(5):
            with DB.atomic():
                # The UPDATE takes the row's write lock: this deployment's requests queue up here.
                locked = (IngestUniqueId.update(next_index=IngestUniqueId.next_index)
                          .where(IngestUniqueId.mode == key).execute())
                if not locked:
                    try:
                        with DB.atomic():
                            IngestUniqueId.insert(mode=key, next_index=0).execute()
                    except peewee.IntegrityError:
                        pass  # another process created it first
                    continue
                high_water = IngestUniqueId.get_by_id(key).next_index
                start = self._fresh_range(count, mode, high_water)
                IngestUniqueId.update(next_index=start + count).where(IngestUniqueId.mode == key).execute()
                return start
        raise PeerUnavailable(PEER, self.url, f"could not lock the range record of mode {mode!r}")

    def _fresh_range(self, count: int, mode: str, high_water: int) -> int:
        for _attempt in range(self.ATTEMPTS):
            start = self._ask(count, mode)
            if start >= high_water:
                return start
            logger.warning("uniqueid at %s handed out %s ids of mode %r from %s, which it had handed out "
                           "before (ids below %s are taken); asking again", self.url, count, mode, start, high_water)
        raise PeerUnavailable(PEER, self.url, f"it keeps handing out {mode} ids that are already taken "
                                              f"(below {high_water})")


# Rows of the id table that record, per mode, the end of the highest range the HTTP uniqueid
# gave this deployment (the embedded uniqueid's rows are named by the mode alone).
HIGH_WATER_PREFIX = "http:"


class EmbeddedUniqueId:
    """Reserve id ranges from this service's own database (safe under concurrent workers).

    The first range of 'upload_job' starts after the highest job id already recorded, so a
    database taken over from a deployment that used the UniqueID service keeps its jobs apart.
    """

    url = "embedded:"

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` ids of ``mode`` and return the first."""

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
