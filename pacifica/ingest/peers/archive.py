"""The archive interface: ``PUT``/``PATCH``/``DELETE {url}/{file_id}``."""

from __future__ import annotations

import email.utils
from collections.abc import Iterable

import requests

from ..errors import PeerRejected
from .base import call

PEER = "archive interface"


class HttpArchive:
    """Store files in the Pacifica Archive Interface."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def _file_url(self, file_id: int) -> str:
        return f"{self.url}/{int(file_id)}"

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Stream ``size`` bytes from ``body`` to the archive as ``file_id``."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        }
        call(self.session, PEER, "PUT", self._file_url(file_id), data=body, headers=headers)

    def patch(self, file_id: int, source: str) -> None:
        """Ask the archive to move ``source`` into place as ``file_id``."""
        call(self.session, PEER, "PATCH", self._file_url(file_id), json={"path": source})

    def delete(self, file_id: int) -> None:
        """Remove ``file_id`` from the archive; a file that is already gone is fine."""
        try:
            call(self.session, PEER, "DELETE", self._file_url(file_id))
        except PeerRejected as exc:
            if "404" not in exc.detail:
                raise
