"""A job's manifest: what 'load metadata' found in a bundle or a move document, kept on the volume
in one SQLite file, so that no stage holds a bundle's member list or metadata document in memory.

A bundle may hold millions of members and a ``metadata.txt`` of 64 MiB describes a few hundred
thousand files; as Python objects either costs several hundred MB. Here each is a row: 'load
metadata' writes them as it reads them, the rules that match Files objects against members are
SQL over indexed tables, and later stages read one row at a time.

The manifest is written once, into a temporary file renamed into place when it is complete, and
is then only read (opened immutable: no locks, so a volume on NFS serves it to every worker).

Tables:

- ``about``: key and JSON value: the bundle's identity, the first file id, the identity of the
  bundle the upload digests were taken of.
- ``member``: each tar member kept (no links, no escaping paths): its name as written, its
  normalised name, kind, size, data offset and mtime. ``found`` is the first member of each name.
- ``entry``: each complete Files object, in document order (``ordinal``): where it is in the
  document, its path in the bundle, declared size, hash, move source.
- ``item``: every object of the document as JSON text, for the policy and metadata services.
- ``digest``: the SHA-1 of members taken while the upload arrived (``tarhash``), by data offset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from ...core.redact import Problems
from ..bundles.document import (
    FILES_TABLE,
    TRANSACTION_ID,
    FileEntry,
    file_path,
    member_name,
    peer_item,
    transaction_values,
)

logger = logging.getLogger(__name__)

FILE, DIRECTORY, LINK, OTHER = "file", "dir", "link", "other"
BATCH = 2000

_SCHEMA = """
CREATE TABLE about (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE member (seq INTEGER PRIMARY KEY, name TEXT NOT NULL, normal TEXT NOT NULL, kind TEXT NOT NULL,
                     size INTEGER NOT NULL, offset INTEGER NOT NULL, mtime REAL NOT NULL);
CREATE TABLE entry (ordinal INTEGER PRIMARY KEY, idx INTEGER NOT NULL, name TEXT NOT NULL, subdir TEXT NOT NULL,
                    path TEXT NOT NULL, size INTEGER, hashtype TEXT NOT NULL, hashsum TEXT NOT NULL, source TEXT);
CREATE TABLE item (idx INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE digest (offset INTEGER PRIMARY KEY, size INTEGER NOT NULL, sha1 TEXT NOT NULL);
"""

# After every member is in: the first member of each name, and the indexes the matching rules use.
_INDEXES = """
CREATE INDEX member_by_name ON member (normal, seq);
CREATE TABLE found AS SELECT normal, min(seq) AS seq, name, kind, size, offset, mtime FROM member GROUP BY normal;
CREATE UNIQUE INDEX found_by_name ON found (normal);
CREATE INDEX entry_by_path ON entry (path, ordinal);
CREATE INDEX entry_by_index ON entry (idx);
"""

# The rules of a bundle's members against its Files objects, each a query of the problems it finds.
_DUPLICATE_MEMBERS = """
SELECT m.normal FROM member m WHERE m.kind != 'dir'
  AND EXISTS (SELECT 1 FROM member p WHERE p.normal = m.normal AND p.seq < m.seq) ORDER BY m.seq"""
_NOT_A_FILE = """
SELECT e.path FROM entry e LEFT JOIN found f ON f.normal = e.path
 WHERE f.kind IS NULL OR f.kind != 'file' ORDER BY e.ordinal"""
_DESCRIBED_TWICE = """
SELECT e.path FROM entry e JOIN found f ON f.normal = e.path AND f.kind = 'file'
 WHERE EXISTS (SELECT 1 FROM entry p WHERE p.path = e.path AND p.ordinal < e.ordinal) ORDER BY e.ordinal"""
_WRONG_SIZE = """
SELECT e.path, e.size, f.size FROM entry e JOIN found f ON f.normal = e.path AND f.kind = 'file'
 WHERE e.size IS NOT NULL AND e.size != f.size
   AND NOT EXISTS (SELECT 1 FROM entry p WHERE p.path = e.path AND p.ordinal < e.ordinal) ORDER BY e.ordinal"""
# A regular file outside data/ (metadata.txt aside): the layout mistake behind "not a file in the bundle".
_OUTSIDE_DATA = """
SELECT f.normal FROM found f WHERE f.kind = 'file' AND NOT f.normal GLOB 'data/*' AND f.normal != 'metadata.txt'
 ORDER BY f.seq LIMIT 1"""
_UNDESCRIBED = """
SELECT f.normal FROM found f WHERE f.kind = 'file' AND f.normal GLOB 'data/*'
   AND NOT EXISTS (SELECT 1 FROM entry e WHERE e.path = f.normal) ORDER BY f.seq"""

_ENTRIES = """
SELECT e.ordinal, e.idx, e.name, e.subdir, e.size, e.hashtype, e.hashsum, e.source,
       f.name, f.size, f.offset, f.mtime, d.sha1
  FROM entry e LEFT JOIN found f ON f.normal = e.path
  LEFT JOIN digest d ON d.offset = f.offset AND d.size = f.size
 ORDER BY e.ordinal"""


def kind_of(is_file: bool, is_dir: bool, is_link: bool) -> str:
    """The manifest's kind of a member: a regular file, a directory, a link, or anything else."""
    return FILE if is_file else DIRECTORY if is_dir else LINK if is_link else OTHER


@dataclasses.dataclass(frozen=True, slots=True)
class BundleFile:
    """A file of an uploaded bundle as its manifest holds it: where its bytes lie in the tar and
    what they must hash to."""

    file_id: int
    name: str
    subdir: str
    member: str
    size: int
    offset: int
    mtime: float
    hashtype: str
    hashsum: str
    digest: str | None = None  # the SHA-1 of its bytes taken while the upload arrived

    @property
    def path(self) -> str:
        """The file's path inside the bundle: ``data/<subdir>/<name>``, slashes normalised."""
        return file_path(self.subdir, self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class MovedFile:
    """A file of a move as its manifest holds it: where it is now and what it must hash to."""

    file_id: int
    name: str
    subdir: str
    source: str
    size: int | None
    hashtype: str
    hashsum: str

    @property
    def path(self) -> str:
        """The file's path in the transaction: ``data/<subdir>/<name>``."""
        return file_path(self.subdir, self.name)


class ManifestWriter:
    """Build a manifest at ``path`` (``commit`` puts it in place; ``discard`` drops it).

    Feed it members (``add_member``), the document's objects (``add_item``) and its complete
    Files objects (``add_entry``); ``problems`` collects what is wrong as it is found, and
    ``match`` adds every disagreement between members and Files objects.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp = f"{path}.tmp{os.getpid()}"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)
        self.db = sqlite3.connect(self.temp, isolation_level=None)
        # One writer, a fresh file, made durable by commit(): no journal is needed.
        self.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE;"
                              "PRAGMA cache_size = -4096;" + _SCHEMA)
        self.db.execute("BEGIN")
        self.problems = Problems()
        self.entries = 0
        self._members: list[tuple] = []
        self._entries: list[tuple] = []
        self._items: list[tuple] = []
        self._seq = 0

    def set(self, key: str, value: Any) -> None:
        """Record ``value`` (JSON) under ``key`` in ``about``."""
        self.db.execute("INSERT OR REPLACE INTO about VALUES (?, ?)", (key, json.dumps(value)))

    def add_member(self, name: str, kind: str, size: int, offset: int = 0, mtime: float = 0.0) -> None:
        """A member of the tar, in the order of the tar; an escaping path, a link, a device or a
        FIFO is a problem and is not kept."""
        if name.startswith("/") or ".." in name.split("/"):
            self.problems.add(f"member {name!r} has an absolute or '..' path")
            return
        normal = member_name(name)
        if kind in (LINK, OTHER):
            self.problems.add(f"member {normal!r} is a link, device or FIFO")
            return
        self._seq += 1
        self._members.append((self._seq, name, normal, kind, size, offset, mtime))
        if len(self._members) >= BATCH:
            self._flush_members()

    def add_item(self, index: int, item: dict[str, Any]) -> None:
        """Object ``index`` of the document, kept for the peers."""
        self._items.append((index, json.dumps(item, separators=(",", ":"))))
        if len(self._items) >= BATCH:
            self._flush_items()

    def add_entry(self, entry: FileEntry) -> None:
        """A complete Files object, in document order."""
        self._entries.append((self.entries, entry.index, entry.name, entry.subdir, entry.path, entry.size,
                              entry.hashtype, entry.hashsum, entry.source))
        self.entries += 1
        if len(self._entries) >= BATCH:
            self._flush_entries()

    def add_digests(self, digests: Iterable[tuple[int, int, str]]) -> None:
        """The (offset, size, sha1) of members hashed while the upload arrived."""
        self.db.executemany("INSERT OR REPLACE INTO digest VALUES (?, ?, ?)", digests)

    def _flush_members(self) -> None:
        self.db.executemany("INSERT INTO member VALUES (?, ?, ?, ?, ?, ?, ?)", self._members)
        self._members.clear()

    def _flush_entries(self) -> None:
        self.db.executemany("INSERT INTO entry VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._entries)
        self._entries.clear()

    def _flush_items(self) -> None:
        self.db.executemany("INSERT INTO item VALUES (?, ?)", self._items)
        self._items.clear()

    def _flush(self) -> None:
        self._flush_members()
        self._flush_entries()
        self._flush_items()

    def _index(self) -> None:
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'found'").fetchone():
            return
        for statement in _INDEXES.split(";"):  # one by one: executescript would end the transaction
            if statement.strip():
                self.db.execute(statement)

    def match(self) -> Problems:
        """Add every disagreement between the members and the Files objects to ``problems``.

        Each Files object must name exactly one regular-file member of the declared size, each
        regular file under ``data/`` must be described, and no member may appear twice.
        """
        self._flush()
        self._index()
        for (name,) in self.db.execute(_DUPLICATE_MEMBERS):
            self.problems.add(f"member {name!r} appears more than once in the tar")
        # The layout mistake first: it explains the "not a file in the bundle" lines that follow.
        if self.db.execute(_NOT_A_FILE + " LIMIT 1").fetchone():
            outside = self.db.execute(_OUTSIDE_DATA).fetchone()
            if outside:
                self.problems.add(f"the bundle holds files outside data/ ({outside[0][:80]!r}): a bundle is "
                                  "metadata.txt beside a data/ folder, and a file described with subdir 'a/b' and "
                                  "name 'c' is the member data/a/b/c")
        for (path,) in self.db.execute(_NOT_A_FILE):
            self.problems.add(f"{path}: described in metadata but not a file in the bundle")
        for (path,) in self.db.execute(_DESCRIBED_TWICE):
            self.problems.add(f"{path}: described by more than one Files object")
        for path, declared, held in self.db.execute(_WRONG_SIZE):
            self.problems.add(f"{path}: metadata says {declared} bytes, the bundle holds {held}")
        for (path,) in self.db.execute(_UNDESCRIBED):
            self.problems.add(f"{path}: in the bundle but not described in metadata")
        return self.problems

    def files(self) -> Iterator[FileEntry]:
        """The complete Files objects added so far, in document order (without ids)."""
        self._flush_entries()
        for row in self.db.execute("SELECT idx, name, subdir, size, hashtype, hashsum, source FROM entry "
                                   "ORDER BY ordinal"):
            index, name, subdir, size, hashtype, hashsum, source = row
            yield FileEntry(index=index, name=name, subdir=subdir, size=size, hashtype=hashtype, hashsum=hashsum,
                            source=source)

    def commit(self, first_file_id: int) -> Manifest:
        """Give the entries file ids from ``first_file_id`` on, make the manifest durable and put
        it in place; return it opened for reading."""
        self._flush()
        self._index()
        self.set("first_file_id", int(first_file_id))
        self.db.execute("COMMIT")
        self.db.close()
        with open(self.temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temp, self.path)
        return Manifest(self.path)

    def discard(self) -> None:
        """Drop the manifest being built."""
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if os.path.exists(self.temp):
            self.discard()


class Manifest:
    """A committed manifest, read one row at a time (safe to share between threads that take
    turns, as the senders of 'ingest files' do)."""

    def __init__(self, path: str) -> None:
        self.path = path
        uri = "file:" + _quote(os.path.abspath(path)) + "?mode=ro&immutable=1"
        self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.db.execute("PRAGMA cache_size = -4096")
        self.about = {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM about")}
        self.first_file_id = int(self.about["first_file_id"])

    def count(self) -> int:
        """How many files the job has."""
        return self.db.execute("SELECT count(*) FROM entry").fetchone()[0]

    def total_bytes(self) -> int:
        """How many bytes the job's files hold."""
        return self.db.execute("SELECT coalesce(sum(coalesce(f.size, e.size, 0)), 0) FROM entry e "
                               "LEFT JOIN found f ON f.normal = e.path").fetchone()[0]

    def files(self, limit: int = -1) -> Iterator[BundleFile]:
        """The files of an uploaded bundle in document order, each with its id, member, offset and
        size (and the SHA-1 taken during the upload, if any)."""
        for row in self.db.execute(_ENTRIES + " LIMIT ?", (limit,)):
            ordinal, _index, name, subdir, _size, hashtype, hashsum, _source, member, held, offset, mtime, sha1 = row
            if member is None:
                raise ValueError(f"{self.path} is the manifest of a move: it has no bundle files")
            yield BundleFile(file_id=self.first_file_id + ordinal, name=name, subdir=subdir, member=member,
                             size=held, offset=offset, mtime=mtime, hashtype=hashtype, hashsum=hashsum, digest=sha1)

    def moved_files(self) -> Iterator[MovedFile]:
        """The files of a move in document order, each with its id and source."""
        for row in self.db.execute("SELECT ordinal, name, subdir, size, hashtype, hashsum, source FROM entry "
                                   "ORDER BY ordinal"):
            ordinal, name, subdir, size, hashtype, hashsum, source = row
            if source is None:
                raise ValueError(f"{self.path} is the manifest of a bundle: it has no moved files")
            yield MovedFile(file_id=self.first_file_id + ordinal, name=name, subdir=subdir, source=source, size=size,
                            hashtype=hashtype, hashsum=hashsum)

    def listing(self, limit: int = -1) -> Iterator[tuple[int, str, int | None]]:
        """The first ``limit`` files as (file id, subdir/name, size), for people to read."""
        rows = self.db.execute("SELECT e.ordinal, e.subdir, e.name, coalesce(f.size, e.size) FROM entry e "
                               "LEFT JOIN found f ON f.normal = e.path ORDER BY e.ordinal LIMIT ?", (limit,))
        for ordinal, subdir, name, size in rows:
            yield self.first_file_id + ordinal, "/".join(filter(None, [subdir, name])), size

    def recorded_files(self) -> Iterator[tuple[int, str, int, str, str]]:
        """Every file as the record of archived files keeps it: (file id, path in the
        transaction, size, hash type, hash sum), in document order."""
        rows = self.db.execute("SELECT e.ordinal, e.subdir, e.name, coalesce(f.size, e.size, 0), e.hashtype, "
                               "e.hashsum FROM entry e LEFT JOIN found f ON f.normal = e.path ORDER BY e.ordinal")
        for ordinal, subdir, name, size, hashtype, hashsum in rows:
            yield self.first_file_id + ordinal, file_path(subdir, name), size, hashtype, hashsum

    def transaction_values(self) -> dict[str, str]:
        """The values the document gives its transaction (``Transactions.project`` and the like),
        by field name ('project'), as text."""
        rows = self.db.execute("SELECT body FROM item WHERE body LIKE '%Transactions.%' ORDER BY idx")
        return transaction_values(json.loads(body) for (body,) in rows)

    def file_ids(self) -> list[int]:
        """The ids of every file of the job."""
        return list(range(self.first_file_id, self.first_file_id + self.count()))

    def peer_items(self, job_id: int) -> Iterator[dict[str, Any]]:
        """The document as the policy and metadata services receive it (``bundle.for_peers``),
        one object at a time."""
        if self.about.get("items_for_peers"):  # converted from an earlier version's sidecar
            for (body,) in self.db.execute("SELECT body FROM item ORDER BY idx"):
                yield json.loads(body)
            return
        rows = self.db.execute("SELECT i.body, e.ordinal FROM item i LEFT JOIN entry e ON e.idx = i.idx "
                               "ORDER BY i.idx")
        for body, ordinal in rows:
            item = json.loads(body)
            if ordinal is not None and item.get("destinationTable") == FILES_TABLE:
                item["_id"] = self.first_file_id + ordinal
            yield peer_item(item)
        yield {"destinationTable": TRANSACTION_ID, "value": int(job_id)}

    def close(self) -> None:
        """Close the file."""
        self.db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def from_sidecar(path: str, sidecar: dict[str, Any]) -> Manifest:
    """The manifest, at ``path``, of what an earlier version of 'load metadata' kept in a JSON
    sidecar (``{"bundle", "metadata", "files"}``), with the same file ids: a job that was under
    way during an upgrade goes on as it was."""
    files = [FileEntry(**{key: value for key, value in item.items() if key in FileEntry.__slots__})
             for item in sidecar.get("files", [])]
    with ManifestWriter(path) as writer:
        writer.set("bundle", sidecar.get("bundle"))
        writer.set("items_for_peers", True)
        for entry in files:
            if entry.member is not None:
                writer.add_member(entry.member, FILE, entry.size or 0, entry.offset or 0, entry.mtime or 0.0)
            writer.add_entry(entry)
        for index, item in enumerate(sidecar.get("metadata", [])):
            writer.add_item(index, item)
        return writer.commit(files[0].file_id if files and files[0].file_id is not None else 0)


def open_manifest(path: str) -> Manifest | None:
    """The manifest at ``path``, or None if there is none (or it is not a whole manifest)."""
    if not os.path.exists(path):
        return None
    try:
        return Manifest(path)
    except (sqlite3.Error, KeyError, ValueError) as exc:
        logger.warning("%s is not a usable manifest (%s); the metadata is loaded again", path, exc)
        return None


def _quote(path: str) -> str:
    """``path`` as the path of a file: URI (only the characters SQLite's URI parser treats
    specially are escaped)."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
