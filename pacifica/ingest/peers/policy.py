"""The policy service: ``POST {ingest_url}`` with the metadata, the user in the auth header."""

from __future__ import annotations

from typing import Any

import requests

from ..errors import PeerRejected
from .base import call, json_body

PEER = "policy"


class HttpPolicy:
    """Ask the Pacifica Policy service whether a user may ingest some metadata."""

    def __init__(self, url: str, auth_header: str, session: requests.Session) -> None:
        self.url = url
        self.auth_header = auth_header
        self.session = session

    def check_ingest(self, metadata: list[dict[str, Any]], user: str) -> None:
        """Return if the policy answers ``{"status": "success"}``; raise ``PeerRejected`` otherwise."""
        response = call(self.session, PEER, "POST", self.url, json=metadata,
                        headers={self.auth_header: user})
        body = json_body(PEER, self.url, response)
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("message", body) if isinstance(body, dict) else body
            raise PeerRejected(PEER, self.url, f"refused: {reason}")
