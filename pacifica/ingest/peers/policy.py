"""The policy service: ``POST {ingest_url}`` with the metadata, the user in the auth header."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import Any

import requests

from ...core.http import call, json_body
from ...core.jsonbody import dump_items
from ...core.redact import summarise
from ..bundles.document import structure_problems
from ..common.errors import PeerRejected

PEER = "policy"


class HttpPolicy:
    """Ask the Pacifica Policy service whether a user may ingest some metadata."""

    structural_only = False

    def __init__(self, url: str, auth_header: str, session: requests.Session) -> None:
        self.url = url
        self.auth_header = auth_header
        self.session = session

    def check_ingest(self, metadata: Iterable[dict[str, Any]], user: str) -> None:
        """Return if the policy answers ``{"status": "success"}``; raise ``PeerRejected`` otherwise.

        The document is written to a temporary file object by object and sent from there: a
        large one is never held as one JSON text besides its objects."""
        with tempfile.TemporaryFile() as body:
            dump_items(metadata, body)
            response = call(self.session, PEER, "POST", self.url, data=body, refusals_in_500=True,
                            headers={self.auth_header: user, "Content-Type": "application/json"})
        body = json_body(PEER, self.url, response)
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("message", body) if isinstance(body, dict) else body
            raise PeerRejected(PEER, self.url, f"refused: {reason}")


class EmbeddedPolicy:
    """Check the metadata's structure and let every user ingest: no authorisation at all."""

    url = "embedded:"
    structural_only = True
    WARNING = ("the embedded policy is in use: NO AUTHORISATION IS ENFORCED, any user may ingest "
               "into any project (set [policy] ingest_url to a Pacifica Policy service to enforce one)")

    def check_ingest(self, metadata: Iterable[dict[str, Any]], user: str) -> None:
        """Raise ``PeerRejected`` listing every structural problem of ``metadata``."""
        problems = structure_problems(metadata)
        if problems:
            raise PeerRejected(PEER, self.url, "refused: " + summarise(problems))
