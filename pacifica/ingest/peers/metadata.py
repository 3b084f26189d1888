"""The metadata service: ``PUT {ingest_url}`` with the transaction's metadata list."""

from __future__ import annotations

import json
import re
from typing import Any

import requests

from ...core.http import call, json_body
from ..bundle import FILES_TABLE, TRANSACTION_ID
from ..errors import PeerRejected
from ..models import DB, IngestMetadata

PEER = "metadata"


class HttpMetadata:
    """Record a transaction's metadata in the Pacifica Metadata service."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session

    def ingest(self, metadata: list[dict[str, Any]]) -> None:
        """Return if the service answers ``{"status": "success"}``; raise ``PeerRejected`` otherwise."""
        response = call(self.session, PEER, "PUT", self.url, json=metadata, refusals_in_500=True)
        body = json_body(PEER, self.url, response)
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("message", body) if isinstance(body, dict) else body
            raise PeerRejected(PEER, self.url, f"refused: {reason}")


MIMETYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


class EmbeddedMetadata:
    """Keep each transaction's metadata document in this service's own database."""

    url = "embedded:"

    def ingest(self, metadata: list[dict[str, Any]]) -> None:
        """Store ``metadata`` under its ``Transactions._id``; raise ``PeerRejected`` if it is malformed."""
        problems = []
        job_ids = [item.get("value") for item in metadata if item.get("destinationTable") == TRANSACTION_ID]
        if len(job_ids) != 1 or not isinstance(job_ids[0], int):
            problems.append("exactly one integer Transactions._id is required")
        for item in metadata:
            if item.get("destinationTable") != FILES_TABLE:
                continue
            if not isinstance(item.get("_id"), int):
                problems.append(f"Files object {item.get('name')!r} has no integer _id")
            if "mimetype" in item and not MIMETYPE.match(str(item["mimetype"])):
                problems.append(f"Files object {item.get('name')!r}: invalid mimetype {item['mimetype']!r}")
        if problems:
            raise PeerRejected(PEER, self.url, "refused: " + "; ".join(problems))
        with DB.atomic():
            document = json.dumps(metadata)
            if not IngestMetadata.update(document=document).where(IngestMetadata.job_id == job_ids[0]).execute():
                IngestMetadata.insert(job_id=job_ids[0], document=document).execute()

    def get(self, job_id: int) -> list[dict[str, Any]] | None:
        """Return the document stored for ``job_id``, or None."""
        row = IngestMetadata.get_or_none(IngestMetadata.job_id == int(job_id))
        return json.loads(row.document) if row is not None else None
