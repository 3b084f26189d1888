"""The agent's journal: every file it saw and every bundle it made, in a SQLite file beside it.

A file is one version of a path (its size and mtime): seen, bundled, sent, archived, pruned. A
bundle is written down whole (its files, their digests, its ``metadata.txt``, its length)
before its upload is created, and its upload's URL as soon as the service gives it: an agent
killed at any moment finds, on restart, the same bundle and the same upload, and goes on from
the offset the service holds. A file changed after it was sent is a new version, and a new job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .bundle import BundleFile

# States of a bundle, in order; 'failed' may follow any of them.
READY, SENDING, SENT, COMPLETE, PRUNED, FAILED = "ready", "sending", "sent", "complete", "pruned", "failed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS file (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, bundle_id INTEGER,
    state TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (path, size, mtime_ns));
CREATE TABLE IF NOT EXISTS bundle (
    id INTEGER PRIMARY KEY AUTOINCREMENT, root TEXT NOT NULL, name TEXT NOT NULL, files TEXT NOT NULL,
    metadata BLOB NOT NULL, mtime INTEGER NOT NULL, length INTEGER NOT NULL, url TEXT, job_id INTEGER,
    state TEXT NOT NULL, sent_bytes INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS bundle_state ON bundle (state);
"""
# Columns added after the first journals were written, each added to an older journal on open.
LATER_COLUMNS = {"parts": "TEXT"}


@dataclasses.dataclass
class Bundle:
    """A bundle as the journal keeps it."""

    id: int
    root: str
    name: str
    files: list[BundleFile]
    metadata: bytes
    mtime: int
    length: int
    url: str | None
    job_id: int | None
    state: str
    sent_bytes: int
    error: str
    created: float
    updated: float
    # The partial uploads of a bundle sent as parallel streams: [[start, end, url or None], ...].
    parts: list[list[Any]] | None = None

    @property
    def size(self) -> int:
        """Bytes of data (the files, without the tar's headers)."""
        return sum(entry.size for entry in self.files)


class Journal:
    """The journal at ``path`` (created on first use); safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode = wal")
        self._db.execute("PRAGMA synchronous = full")  # a power cut must not lose a bundle's URL
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(bundle)")}
        for column, kind in LATER_COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE bundle ADD COLUMN {column} {kind}")
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Files -------------------------------------------------------------------------------------

    def known(self, path: str, size: int, mtime_ns: int) -> bool:
        """Whether this version of ``path`` is in a bundle already."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM file WHERE path = ? AND size = ? AND mtime_ns = ?",
                                   (path, size, mtime_ns)).fetchone()
        return row is not None

    # Bundles -----------------------------------------------------------------------------------

    def add_bundle(self, root: str, name: str, files: Sequence[BundleFile], versions: Sequence[tuple[str, int, int]],
                   metadata: bytes, mtime: int, length: int) -> Bundle:
        """Write down a bundle of ``files`` (the ``versions`` (path, size, mtime_ns) they were
        made from) before anything of it is sent."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO bundle (root, name, files, metadata, mtime, length, state, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (root, name, json.dumps([entry.as_dict() for entry in files]), metadata, mtime, length, READY, now,
                 now))
            bundle_id = int(cursor.lastrowid or 0)
            db.executemany("INSERT OR REPLACE INTO file (path, size, mtime_ns, bundle_id, state, updated) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(path, size, mtime_ns, bundle_id, READY, now) for path, size, mtime_ns in versions])
        bundle = self.bundle(bundle_id)
        assert bundle is not None
        return bundle

    def update(self, bundle_id: int, **fields: Any) -> None:
        """Change fields of a bundle (its files follow its state)."""
        if "parts" in fields:
            fields["parts"] = json.dumps(fields["parts"])
        fields["updated"] = time.time()
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction() as db:
            db.execute(f"UPDATE bundle SET {names} WHERE id = ?", (*fields.values(), bundle_id))
            if "state" in fields:
                db.execute("UPDATE file SET state = ?, updated = ? WHERE bundle_id = ?",
                           (fields["state"], fields["updated"], bundle_id))

    def progress(self, bundle_id: int, sent_bytes: int) -> None:
        """How far a bundle's upload is (no change of state)."""
        with self._lock:
            self._db.execute("UPDATE bundle SET sent_bytes = ?, updated = ? WHERE id = ?",
                             (sent_bytes, time.time(), bundle_id))

    def bundle(self, bundle_id: int) -> Bundle | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM bundle WHERE id = ?", (bundle_id,)).fetchone()
        return _bundle(row) if row else None

    def bundles(self, *states: str) -> list[Bundle]:
        """The bundles in ``states`` (every one without), oldest first."""
        query = "SELECT * FROM bundle"
        if states:
            query += f" WHERE state IN ({', '.join('?' for _ in states)})"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", states).fetchall()
        return [_bundle(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many bundles are in each state."""
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM bundle GROUP BY state").fetchall())


def _bundle(row: tuple) -> Bundle:
    (bundle_id, root, name, files, metadata, mtime, length, url, job_id, state, sent_bytes, error, created,
     updated, parts) = row
    return Bundle(bundle_id, root, name, [BundleFile(**item) for item in json.loads(files)], bytes(metadata), mtime,
                  length, url, job_id, state, sent_bytes, error, created, updated,
                  json.loads(parts) if parts else None)
