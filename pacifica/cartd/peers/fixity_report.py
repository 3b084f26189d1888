"""Telling the ingest service that a file read for a cart did not match its digest.

Ingest keeps a record of every file it archived and of each fixity check of it (its tables
``ingestarchivedfile`` and ``ingestfixityevent``, schema 2.5). A cart that pulls a file whose
bytes do not hash to what was declared at ingest has made such a check: it is written there as a
failed one, so the jobs page, ``/metrics`` and the next audit report show it. cartd reaches that
database as ``[cartd] ingest_database`` (the embedded ingest's by default), the same way it
learns who may read which file.

Only a mismatch with the digest ingest recorded counts: a cart request may name any digest, and a
client must not be able to mark someone's file failed by asking for a wrong one.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os

import peewee

from ...core.database import make_database
from ...core.errors import ConfigError

logger = logging.getLogger(__name__)

ARCHIVED_TABLE = "ingestarchivedfile"
EVENT_TABLE = "ingestfixityevent"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class IngestFixityReport:
    """Write a cart's hash mismatch into the ingest service's fixity record."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def _absent(self) -> bool:
        """An SQLite database that does not exist (no embedded ingest here): nothing to tell,
        and opening it would create an empty file."""
        if not self.database_url.startswith("sqlite"):
            return False
        path = self.database_url.split("://", 1)[-1].split("?", 1)[0]
        return not path or not os.path.exists(path)

    def failed(self, file_id: str, hashtype: str, expected: str, actual: str, detail: str) -> bool:
        """Record that file ``file_id`` hashed to ``actual``, not ``expected``; whether the record
        took it (False: no such database, table or file, or another digest is recorded for it)."""
        if not self.database_url or self._absent() or not str(file_id).isdigit():
            return False
        try:
            database = make_database(self.database_url)
        except ConfigError as exc:
            logger.warning("cannot report a fixity failure to ingest: %s", exc)
            return False
        try:
            database.connect()
            if not database.table_exists(ARCHIVED_TABLE):
                return False
            param = database.param
            now = _utcnow()
            with database.atomic():
                changed = database.execute_sql(
                    f"UPDATE {ARCHIVED_TABLE} SET outcome = 'failed', checked = {param} "
                    f"WHERE file_id = {param} AND hashtype = {param} AND lower(hashsum) = {param}",
                    (now, int(file_id), hashtype, expected.lower())).rowcount
                if changed:
                    database.execute_sql(
                        f"INSERT INTO {EVENT_TABLE} (file_id, job_id, time, algorithm, size, expected, actual, "
                        f"outcome, detail) SELECT file_id, job_id, {param}, {param}, size, hashsum, {param}, "
                        f"'failed', {param} FROM {ARCHIVED_TABLE} WHERE file_id = {param}",
                        (now, hashtype, actual, detail[:2000], int(file_id)))
            if changed:
                logger.error("file %s read for a cart is not what ingest archived (%s); ingest's fixity record "
                             "says so now", file_id, detail)
            return bool(changed)
        except peewee.PeeweeException as exc:
            logger.warning("cannot report the fixity failure of file %s to ingest: %s", file_id, exc)
            return False
        finally:
            with contextlib.suppress(peewee.PeeweeException):
                database.close()
