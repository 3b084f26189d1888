"""What the pipeline needs from each peer service.

Each port is a ``typing.Protocol``; the HTTP adapters in the sibling modules speak the
published wire protocols through ``pacifica.core.http``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class UniqueIdPort(Protocol):
    """Hands out ranges of ids that are never reused."""

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` consecutive ids of ``mode`` ('upload_job' or 'file'); return the first."""


class PolicyPort(Protocol):
    """Decides whether a user may ingest a metadata document."""

    def check_ingest(self, metadata: Iterable[dict[str, Any]], user: str) -> None:
        """Return if allowed; raise ``PeerRejected`` with the policy's reason if not. ``metadata``
        is the document's objects, read once (a list, or a stream of a large document)."""


class ArchivePort(Protocol):
    """Stores file bytes under their file id."""

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


class MetadataPort(Protocol):
    """Records the metadata of an ingested transaction."""

    def ingest(self, metadata: Iterable[dict[str, Any]]) -> None:
        """Store ``metadata``; raise ``PeerRejected`` with the reason if it is refused. ``metadata``
        is the document's objects, read once (a list, or a stream of a large document)."""


