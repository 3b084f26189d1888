"""What making a cart needs from the archive: the port the cart task works against.

``peers.archive`` has its two adapters: the Pacifica Archive Interface over HTTP
(``ArchiveRequests``) and a local directory (``LocalArchiveRequests``, the embedded ingest
service's archive).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class CartArchivePort(Protocol):
    """An archive the cart task stages files from and pulls them out of."""

    def status(self, file_name: Any) -> dict[str, Any]:
        """The archive's status of a file: ``filesize``, ``mtime``, ``file_storage_media``
        (``disk`` or ``tape``) and the others of ``archive.HEADER_FIELDS``."""

    def stage_file(self, file_name: Any) -> None:
        """Ask the archive to bring a file from tape to its disk."""

    def pull_file(self, archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str,
                  retry: int | None = None, progress: Callable[[int], None] | None = None) -> str:
        """Copy a file to ``cart_filepath``, whole and matching ``hashval`` (if given), calling
        ``progress`` with each block's size; return its digest."""
