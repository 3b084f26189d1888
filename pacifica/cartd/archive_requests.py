"""The archive interface as the cart service uses it: stage (POST), status (HEAD), pull (GET).

Built on the ingest service's peer client (pooled keep-alive connections, timeouts, bounded
retries, ``PeerUnavailable`` / ``PeerRejected`` naming the archive and its reason).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from typing import Any

import requests

from ..ingest.errors import IntegrityError, PeerUnavailable
from ..ingest.peers.base import call, make_session

PEER = "archive"
HEADER_FIELDS = {
    "message": "x-pacifica-messsage",  # sic: the archive interface spells it with three s
    "filesize": "x-content-length",
    "ctime": "x-pacifica-ctime",
    "mtime": "last-modified",
    "bytes_per_level": "x-pacifica-bytes-per-level",
    "file_storage_media": "x-pacifica-file-storage-media",
}


class ArchiveRequests:
    """Class that supports all the requests to the archive interface."""

    default_retry_count = 5
    default_retry_sleep = 1.0

    def __init__(self, url: str | None = None, session: requests.Session | None = None,
                 transfer_size: int | None = None) -> None:
        """Constructor for setting the AI URL (by default that of the cart settings)."""
        if url is None or transfer_size is None:
            from .config import load_settings

            settings = load_settings()
            url = settings.archive_url if url is None else url
            transfer_size = settings.transfer_size if transfer_size is None else transfer_size
        self._url = url if url.endswith("/") else url + "/"
        self.transfer_size = transfer_size
        self.session = session or make_session(60, 3)

    def _file_url(self, file_name: Any) -> str:
        return self._url + str(file_name).lstrip("/")

    def stage_file(self, file_name: Any) -> None:
        """Send a post to the archive interface telling it to stage the file."""
        call(self.session, PEER, "POST", self._file_url(file_name))

    @staticmethod
    def _status_dict(headers: Any, file_name: Any) -> dict[str, Any]:
        """Return status dictionary from http response headers."""
        status = {name: headers.get(header) for name, header in HEADER_FIELDS.items()}
        status["file"] = file_name
        return status

    def status_file(self, file_name: Any) -> str:
        """Get a status from the archive interface via Head and returns response (as JSON)."""
        response = call(self.session, PEER, "HEAD", self._file_url(file_name))
        return json.dumps(self._status_dict(response.headers, file_name))

    def pull_file(self, archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str,
                  retry: int | None = None) -> None:
        """Pull file from AI: write it to ``cart_filepath``, hashing it on the way.

        The file appears at ``cart_filepath`` only whole and matching ``hashval``; a transfer
        that fails is tried again up to ``retry`` times. A hash mismatch raises
        ``IntegrityError`` at once (the archive's copy will not change by asking again).
        """
        attempts = self.default_retry_count if retry is None else max(1, retry)
        for attempt in range(1, attempts + 1):
            try:
                self._pull_file(archive_filename, cart_filepath, hashval, hashtype)
                return
            except PeerUnavailable:
                if attempt == attempts:
                    raise
                time.sleep(self.default_retry_sleep)

    def _pull_file(self, archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str) -> None:
        url = self._file_url(archive_filename)
        temp = f"{cart_filepath}.part{os.getpid()}"
        digest = hashlib.new(hashtype)
        received = 0
        try:
            with call(self.session, PEER, "GET", url, stream=True) as response, open(temp, "wb") as out:
                expected = response.headers.get("Content-Length")
                try:
                    for block in response.iter_content(self.transfer_size):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                except requests.RequestException as exc:
                    raise PeerUnavailable(PEER, url, f"the download broke after {received} bytes: {exc}") from None
            if expected is not None and received != int(expected):
                raise PeerUnavailable(PEER, url, f"received {received} of {expected} bytes")
            if hashval and digest.hexdigest() != hashval.lower():
                raise IntegrityError(f"{archive_filename}: {hashtype} is {digest.hexdigest()}, "
                                     f"the cart asked for {hashval}")
            os.replace(temp, cart_filepath)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
