"""The four peers held in memory: for the pipeline's unit tests, and held to the same contract as
the embedded and HTTP adapters (``tests/contract/test_ports.py``).

Each keeps what it was given (``asked``, ``files``, ``documents``), so a test sees what the
pipeline asked of each peer. Nothing is shared between instances and nothing survives them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from ...core.redact import summarise
from ..bundles.document import FILES_TABLE, structure_problems, transaction_values
from ..common.errors import PeerRejected
from .base import UNLIMITED
from .metadata import DocumentCheck

URL = "memory:"


class MemoryUniqueId:
    """Ranges of ids per mode, counted from ``first``."""

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.next: dict[str, int] = {}
        self.asked: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` consecutive ids of ``mode``; return the first."""
        if count < 1:
            raise PeerRejected("uniqueid", URL, f"a range of {count} ids cannot be reserved")
        with self._lock:
            self.asked.append((count, mode))
            start = self.next.get(mode, self.first)
            self.next[mode] = start + count
            return start


class MemoryPolicy:
    """Checks a document's structure, as the embedded policy does; with ``refuse``, refuses every
    document with that reason (a policy that says no)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.structural_only = refuse is None
        self.asked: list[tuple[list[dict[str, Any]], str]] = []

    def check_ingest(self, metadata: Iterable[dict[str, Any]], user: str) -> None:
        """Keep what was asked; raise ``PeerRejected`` for a malformed document or a refusal."""
        document = list(metadata)
        self.asked.append((document, user))
        problems = structure_problems(document)
        if problems:
            raise PeerRejected("policy", URL, "refused: " + summarise(problems))
        if self.refuse:
            raise PeerRejected("policy", URL, self.refuse)


class MemoryArchive:
    """File bytes by file id."""

    max_concurrency = UNLIMITED
    copies_ranges = False
    adopts_files = False

    def __init__(self) -> None:
        self.files: dict[int, bytes] = {}
        self.durable: set[int] = set()
        self.deleted: list[int] = []
        self._lock = threading.Lock()

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Store exactly ``size`` bytes from ``body`` as ``file_id``."""
        data = b"".join(body)
        if len(data) != size:
            raise PeerRejected("archive", URL, f"file {file_id}: received {len(data)} of {size} bytes")
        with self._lock:
            self.files[file_id] = data

    def make_durable(self, file_ids: Iterable[int]) -> None:
        """Remember which files were made durable."""
        with self._lock:
            self.durable.update(file_ids)

    def patch(self, file_id: int, source: str) -> None:
        """Take the file at ``source`` (it leaves its place) as ``file_id``."""
        if not os.path.isfile(source):
            raise PeerRejected("archive", URL, f"file {file_id}: source {source} is not a file")
        with open(source, "rb") as handle:
            data = handle.read()
        os.unlink(source)
        with self._lock:
            self.files[file_id] = data

    def delete(self, file_id: int) -> None:
        """Remove ``file_id`` if it is there."""
        with self._lock:
            self.deleted.append(file_id)
            self.files.pop(file_id, None)

    def stored_size(self, file_id: int) -> int | None:
        """The size held for ``file_id``, or None."""
        data = self.files.get(file_id)
        return None if data is None else len(data)

    def media(self, file_id: int) -> str | None:
        """'memory' for a file held, else None."""
        return "memory" if file_id in self.files else None

    def recall(self, file_id: int, wait: float) -> bool:
        """Nothing to recall: every file is on memory."""
        return True

    def read(self, file_id: int, block_size: int) -> Iterator[bytes]:
        """The bytes held for ``file_id``; ``PeerRejected`` if none."""
        data = self.files.get(file_id)
        if data is None:
            raise PeerRejected("archive", URL, f"file {file_id} does not exist")
        for start in range(0, len(data), block_size):
            yield data[start:start + block_size]


class MemoryMetadata:
    """Documents by their transaction id, checked as the embedded metadata service checks them;
    with ``refuse``, refuses every document with that reason."""

    readable = True

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.documents: dict[int, list[dict[str, Any]]] = {}

    def ingest(self, metadata: Iterable[dict[str, Any]]) -> None:
        """Keep ``metadata`` under its ``Transactions._id``; ``PeerRejected`` if it is malformed."""
        if self.refuse:
            raise PeerRejected("metadata", URL, self.refuse)
        check = DocumentCheck()
        document = list(check.items(metadata))
        self.documents[check.job_id(URL)] = document

    def get(self, job_id: int) -> list[dict[str, Any]] | None:
        """The document kept for ``job_id``, or None."""
        return self.documents.get(int(job_id))

    def files(self, job_id: int) -> Iterator[dict[str, Any]] | None:
        """The Files objects of the document kept for ``job_id``, or None."""
        document = self.get(job_id)
        if document is None:
            return None
        return (item for item in document if item.get("destinationTable") == FILES_TABLE)

    def transaction(self, job_id: int) -> dict[str, str]:
        """The submitter, project and instrument the document kept for ``job_id`` gives."""
        return transaction_values(self.get(job_id) or [])
