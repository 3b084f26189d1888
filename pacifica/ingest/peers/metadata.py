"""The metadata service: ``PUT {ingest_url}`` with the transaction's metadata list."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import ijson
import peewee
import requests

from ...core.http import call, json_body
from ...core.jsonbody import dump_items
from ...core.redact import Problems, summarise
from ..bundles.document import FILES_TABLE, TRANSACTION_ID, transaction_values
from ..common.errors import PeerRejected
from ..db.models import DB, IngestMetadata

PEER = "metadata"
BLOCK = 1 << 20


class HttpMetadata:
    """Record a transaction's metadata in the Pacifica Metadata service."""

    readable = False

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session

    def ingest(self, metadata: Iterable[dict[str, Any]]) -> None:
        """Return if the service answers ``{"status": "success"}``; raise ``PeerRejected`` otherwise.

        The document is written to a temporary file object by object and sent from there: a
        large one is never held as one JSON text besides its objects."""
        with tempfile.TemporaryFile() as document:
            dump_items(metadata, document)
            response = call(self.session, PEER, "PUT", self.url, data=document, refusals_in_500=True,
                            headers={"Content-Type": "application/json"})
        body = json_body(PEER, self.url, response)
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("message", body) if isinstance(body, dict) else body
            raise PeerRejected(PEER, self.url, f"refused: {reason}")

    @property
    def base_url(self) -> str:
        """The service's root: its ingest URL without ``/ingest``."""
        return self.url.rstrip("/").removesuffix("/ingest")

    def files(self, job_id: int, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """The Files objects the service holds for transaction ``job_id``, a page at a time
        (``GET /files?transaction_id=``)."""
        page = 1
        while True:
            url = f"{self.base_url}/files"
            params = {"transaction_id": int(job_id), "recursion_depth": 0, "page_number": page,
                      "items_per_page": page_size}
            rows = json_body(PEER, url, call(self.session, PEER, "GET", url, params=params))
            if not isinstance(rows, list):
                raise PeerRejected(PEER, url, f"answer is not a list of files: {str(rows)[:200]!r}")
            yield from (row for row in rows if isinstance(row, dict))
            if len(rows) < page_size:
                return
            page += 1

    def transaction(self, job_id: int) -> dict[str, str]:
        """The submitter, project and instrument of transaction ``job_id`` (``GET /transsip?_id=``),
        empty if it has none."""
        url = f"{self.base_url}/transsip"
        rows = json_body(PEER, url, call(self.session, PEER, "GET", url,
                                         params={"_id": int(job_id), "recursion_depth": 0}))
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            return {}
        row = rows[0]
        return {key: str(row[key]) for key in ("submitter", "project", "instrument") if row.get(key) is not None}


MIMETYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


class EmbeddedMetadata:
    """Keep each transaction's metadata document in this service's own database."""

    url = "embedded:"
    readable = True

    def ingest(self, metadata: Iterable[dict[str, Any]]) -> None:
        """Store ``metadata`` under its ``Transactions._id``; raise ``PeerRejected`` if it is malformed.

        The objects are checked and written out one at a time: only the JSON text that is
        stored is ever held whole."""
        check = DocumentCheck()
        with tempfile.TemporaryFile() as text:
            dump_items(check.items(metadata), text)
            _store(check.job_id(self.url), text)

    def get(self, job_id: int) -> list[dict[str, Any]] | None:
        """Return the document stored for ``job_id``, or None."""
        row = IngestMetadata.get_or_none(IngestMetadata.job_id == int(job_id))
        return json.loads(row.document) if row is not None else None

    def files(self, job_id: int) -> Iterator[dict[str, Any]] | None:
        """The Files objects of the document stored for ``job_id``, one at a time (the document's
        text is held, not its objects); None if there is no document."""
        row = IngestMetadata.select(IngestMetadata.document).where(IngestMetadata.job_id == int(job_id)).first()
        if row is None:
            return None
        document = row.document.encode() if isinstance(row.document, str) else row.document
        return (item for item in ijson.items(document, "item", use_float=True)
                if isinstance(item, dict) and item.get("destinationTable") == FILES_TABLE)

    def transaction(self, job_id: int) -> dict[str, str]:
        """The submitter, project and instrument the document stored for ``job_id`` gives."""
        return transaction_values(self.get(job_id) or [])


def _store(job_id: int, text: BinaryIO) -> None:
    """Keep the document in the file ``text`` as the row of ``job_id``.

    On SQLite the row's value is reserved at its size (``zeroblob``) and the text written into
    it in blocks (incremental BLOB I/O): the document costs SQLite the value once while the row
    is written, and Python never holds it (given as one string, it was held three times, about
    140 MB more for the largest ``metadata.txt``). The value is then a BLOB of the UTF-8 text,
    which peewee and cartd read as text. Other databases are given the text as one value.
    """
    size = text.seek(0, os.SEEK_END)
    text.seek(0)
    connection = DB.connection()
    with DB.atomic():
        if not isinstance(connection, sqlite3.Connection):
            document = text.read().decode("ascii")  # json.dumps escapes every other character
            if not IngestMetadata.update(document=document).where(IngestMetadata.job_id == job_id).execute():
                IngestMetadata.insert(job_id=job_id, document=document).execute()
            return
        reserved = peewee.fn.zeroblob(size)
        if not IngestMetadata.update(document=reserved).where(IngestMetadata.job_id == job_id).execute():
            IngestMetadata.insert(job_id=job_id, document=reserved).execute()
        with connection.blobopen(IngestMetadata._meta.table_name, "document", job_id) as blob:
            while block := text.read(BLOCK):
                blob.write(block)


class DocumentCheck:
    """The checks a metadata store makes of a document, fed its objects one at a time
    (``items``); ``job_id`` then gives its transaction id or raises ``PeerRejected`` naming every
    problem."""

    def __init__(self) -> None:
        self.problems = Problems()
        self.job_ids: list[Any] = []

    def items(self, metadata: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The objects of ``metadata``, each checked on the way."""
        for item in metadata:
            table = item.get("destinationTable")
            if table == TRANSACTION_ID:
                self.job_ids.append(item.get("value"))
            elif table == FILES_TABLE:
                if not isinstance(item.get("_id"), int):
                    self.problems.add(f"Files object {item.get('name')!r} has no integer _id")
                if "mimetype" in item and not MIMETYPE.match(str(item["mimetype"])):
                    self.problems.add(f"Files object {item.get('name')!r}: invalid mimetype {item['mimetype']!r}")
            yield item

    def job_id(self, url: str) -> int:
        """The document's one integer ``Transactions._id``; ``PeerRejected`` naming every problem."""
        if len(self.job_ids) != 1 or not isinstance(self.job_ids[0], int):
            self.problems.add("exactly one integer Transactions._id is required")
        if self.problems:
            raise PeerRejected(PEER, url, "refused: " + summarise(self.problems))
        return self.job_ids[0]
