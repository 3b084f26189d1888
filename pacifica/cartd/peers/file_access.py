"""Which archived files a user may put in a cart.

In the embedded stack, cartd reads the embedded ingest's archive, and the embedded ingest keeps
who submitted each job and each job's metadata (its Files and their ids) in its own database:
a user may have the files of their own jobs. With an archive interface and the real metadata
service, no Pacifica service records who may read a file, and cartd does not decide it (see
docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import ijson
import peewee

from ...core.database import make_database

logger = logging.getLogger(__name__)


class FileAccessUnknown(Exception):
    """The ingest database that tells who may read which file cannot be read."""


class IngestFileOwners:
    """The files of each user's jobs, as the embedded ingest recorded them."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def readable(self, user: str, file_ids: Iterable[str]) -> set[str]:
        """The ids among ``file_ids`` that belong to a job ``user`` submitted."""
        wanted = {str(file_id) for file_id in file_ids}
        database = make_database(self.database_url)
        found: set[str] = set()
        try:
            database.connect()
            cursor = database.execute_sql(
                "SELECT m.document FROM ingestmetadata m JOIN ingeststate s ON s.id = m.job_id "
                f"WHERE s.submitter = {database.param}", (user,))
            for (document,) in cursor:
                for item in _items(document):
                    if item.get("destinationTable") == "Files" and str(item.get("_id")) in wanted:
                        found.add(str(item["_id"]))
                if found == wanted:
                    break
        except peewee.PeeweeException as exc:
            logger.error("cannot read the ingest database to check file access: %s", exc)
            raise FileAccessUnknown("the ingest database could not be read") from None
        finally:
            with contextlib.suppress(peewee.PeeweeException):
                database.close()
        return found


def _items(document: str | bytes) -> Iterator[dict]:
    """The objects of a stored metadata document, one at a time (a document of a few hundred
    thousand files is never built whole); none of a document that is not a JSON list."""
    try:
        for item in ijson.items(document, "item", use_float=True):
            if isinstance(item, dict):
                yield item
    except ijson.JSONError:
        return
