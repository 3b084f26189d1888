"""The policy service: ``POST {ingest_url}`` with the metadata, the user in the auth header."""

from __future__ import annotations

from typing import Any

import requests

from ...core.http import call, json_body
from ..bundle import structure_problems
from ..errors import PeerRejected

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
                        headers={self.auth_header: user}, refusals_in_500=True)
        body = json_body(PEER, self.url, response)
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("message", body) if isinstance(body, dict) else body
            raise PeerRejected(PEER, self.url, f"refused: {reason}")


class EmbeddedPolicy:
    """Check the metadata's structure and let every user ingest: no authorisation at all."""

    url = "embedded:"
    WARNING = ("the embedded policy is in use: NO AUTHORISATION IS ENFORCED, any user may ingest "
               "into any project (set [policy] ingest_url to a Pacifica Policy service to enforce one)")

    def check_ingest(self, metadata: list[dict[str, Any]], user: str) -> None:
        """Raise ``PeerRejected`` listing every structural problem of ``metadata``."""
        problems = structure_problems(metadata)
        if problems:
            raise PeerRejected(PEER, self.url, "refused: " + "; ".join(problems))
