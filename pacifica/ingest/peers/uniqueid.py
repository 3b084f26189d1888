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
