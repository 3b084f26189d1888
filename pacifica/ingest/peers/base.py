"""What the pipeline needs from each peer service, and what each may declare it can do.

Each port is a ``typing.Protocol``. An adapter declares its optional powers as attributes
(``ArchivePort.max_concurrency``, ``copies_ranges`` and ``adopts_files``, ``MetadataPort.readable``,
``PolicyPort.structural_only``); the pipeline reads the declaration, never the adapter's type,
and ``tests/contract`` holds every adapter to what it declares. The HTTP adapters in the sibling
modules speak the published wire protocols through ``pacifica.core.http``; ``memory`` holds all
four in memory, for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

# An archive that takes as many files at once as it is given.
UNLIMITED = 1 << 16


class UniqueIdPort(Protocol):
    """Hands out ranges of ids that are never reused."""

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` consecutive ids of ``mode`` ('upload_job' or 'file'); return the first."""


class PolicyPort(Protocol):
    """Decides whether a user may ingest a metadata document."""

    # True when it only checks a document's structure (no authorisation): a preflight need not
    # ask it again after running the same structural checks itself.
    structural_only: bool

    def check_ingest(self, metadata: Iterable[dict[str, Any]], user: str) -> None:
        """Return if allowed; raise ``PeerRejected`` with the policy's reason if not. ``metadata``
        is the document's objects, read once (a list, or a stream of a large document)."""


class ArchivePort(Protocol):
    """Stores file bytes under their file id."""

    # How many files it may be sent at once (``UNLIMITED``: as many as the pipeline sends).
    max_concurrency: int
    # True when it offers ``put_range`` (see ``RangeArchivePort``).
    copies_ranges: bool
    # True when it offers ``adopt`` (see ``AdoptingArchivePort``).
    adopts_files: bool

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Store exactly ``size`` bytes read from ``body`` as ``file_id``."""

    def make_durable(self, file_ids: Iterable[int]) -> None:
        """Make sure the files ``file_ids``, already put, survive a crash of this machine."""

    def patch(self, file_id: int, source: str) -> None:
        """Move the file at ``source`` (on the archive's filesystem) to ``file_id``."""

    def delete(self, file_id: int) -> None:
        """Remove ``file_id``; removing a file that is not there is not an error."""

    def stored_size(self, file_id: int) -> int | None:
        """The size the archive holds for ``file_id``, or None if it holds no such file."""

    def media(self, file_id: int) -> str | None:
        """Where the archive keeps ``file_id`` ('disk', 'tape', ...), None if it holds no such file."""

    def recall(self, file_id: int, wait: float) -> bool:
        """Bring ``file_id`` from tape to disk, waiting up to ``wait`` seconds; whether it is on
        disk now (a file already there: at once)."""

    def read(self, file_id: int, block_size: int) -> Iterator[bytes]:
        """The bytes the archive holds for ``file_id``, in blocks of at most ``block_size`` (a
        generator: closing it ends the transfer); ``PeerRejected`` if it holds no such file."""


class RangeArchivePort(ArchivePort, Protocol):
    """An archive on this machine's filesystem that copies a range of the bundle itself (a kernel
    copy: the bytes never pass through Python)."""

    def put_range(self, file_id: int, source: int, offset: int, size: int, mtime: float,
                  check: Callable[[], None] | None = None) -> None:
        """Store ``size`` bytes of the open file ``source`` from ``offset`` as ``file_id``;
        ``check`` runs before the file becomes visible and may raise to refuse it."""


class AdoptingArchivePort(RangeArchivePort, Protocol):
    """An archive on this machine's filesystem that can take a file already there as it is (a
    link: members staged while the upload arrived are never copied)."""

    def can_adopt(self, directory: str) -> bool:
        """Whether files in ``directory`` can be adopted (the same filesystem)."""

    def adopt(self, file_id: int, source: str, size: int, mtime: float,
              check: Callable[[], None] | None = None) -> None:
        """Store the ``size`` bytes file at ``source`` as ``file_id`` without copying it;
        ``source`` stays as it is. ``check`` runs before the file becomes visible and may raise
        to refuse it."""


class MetadataPort(Protocol):
    """Records the metadata of an ingested transaction."""

    # True when it keeps a copy this service can read back (``ReadableMetadataPort``).
    readable: bool

    def ingest(self, metadata: Iterable[dict[str, Any]]) -> None:
        """Store ``metadata``; raise ``PeerRejected`` with the reason if it is refused. ``metadata``
        is the document's objects, read once (a list, or a stream of a large document)."""


class ListingMetadataPort(MetadataPort, Protocol):
    """A metadata store that can say what it recorded of a transaction (every adapter can: the
    record of archived files is filled from it for jobs archived before the record existed)."""

    def files(self, job_id: int) -> Iterable[dict[str, Any]] | None:
        """The Files objects recorded for ``job_id`` (``_id``, ``name``, ``subdir``, ``size``,
        ``hashtype``, ``hashsum``), one at a time."""

    def transaction(self, job_id: int) -> dict[str, str]:
        """The ``submitter``, ``project`` and ``instrument`` recorded for ``job_id``, as text."""


class ReadableMetadataPort(ListingMetadataPort, Protocol):
    """A metadata store whose documents this service can read back."""

    def get(self, job_id: int) -> list[dict[str, Any]] | None:
        """The document stored for ``job_id``, or None."""

    def files(self, job_id: int) -> Iterator[dict[str, Any]] | None:
        """The Files objects of the document stored for ``job_id``, one at a time, or None."""
