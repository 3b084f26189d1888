"""The metadata service: ``PUT {ingest_url}`` with the transaction's metadata list."""

from __future__ import annotations

from typing import Any

import requests

from ..errors import PeerRejected
from .base import call, json_body

PEER = "metadata"


class HttpMetadata:
    """Record a transaction's metadata in the Pacifica Metadata service."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session

    def ingest(self, metadata: list[dict[str, Any]]) -> None:
        """Return if the service answers ``{"status": "success"}``; raise ``PeerRejected`` otherwise."""
        response = call(self.session, PEER, "PUT", self.url, json=metadata)
        body = json_body(PEER, self.url, response)
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("message", body) if isinstance(body, dict) else body
            raise PeerRejected(PEER, self.url, f"refused: {reason}")
