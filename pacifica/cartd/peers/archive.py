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
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import urlparse

import requests

from ...core.errors import ConfigError, IntegrityError, PeerRejected, PeerUnavailable
from ...core.http import call, make_session
from ..common.settings import load_settings

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
            settings = load_settings()
            url = settings.archive_url if url is None else url
            transfer_size = settings.transfer_size if transfer_size is None else transfer_size
        self._url = url if url.endswith("/") else url + "/"
        self.transfer_size = transfer_size
        # Every request here (HEAD, POST to stage, GET) is idempotent, so one that meets a
        # connection the archive closed is sent again: uWSGI --http-socket, the archive's
        # documented deployment, closes each connection after answering without saying so.
        self.session = session or make_session(60, 3, read_retries=2)

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

    def status(self, file_name: Any) -> dict[str, Any]:
        """The archive's status of a file (a HEAD): size, times, where it is stored."""
        response = call(self.session, PEER, "HEAD", self._file_url(file_name))
        return self._status_dict(response.headers, file_name)

    def status_file(self, file_name: Any) -> str:
        """Get a status from the archive interface via Head and returns response (as JSON)."""
        return json.dumps(self.status(file_name))

    def pull_file(self, archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str,
                  retry: int | None = None, progress: Callable[[int], None] | None = None) -> str:
        """Pull file from AI: write it to ``cart_filepath``, hashing it on the way; return its digest.

        The file appears at ``cart_filepath`` only whole and matching ``hashval`` (when one is
        given); a transfer that fails is tried again up to ``retry`` times. A hash mismatch raises
        ``IntegrityError`` at once (the archive's copy will not change by asking again).
        ``progress`` is called with the size of every block written.
        """
        attempts = self.default_retry_count if retry is None else max(1, retry)
        for _attempt in range(attempts - 1):
            try:
                return self._pull_file(archive_filename, cart_filepath, hashval, hashtype, progress)
            except PeerUnavailable:
                time.sleep(self.default_retry_sleep)
        return self._pull_file(archive_filename, cart_filepath, hashval, hashtype, progress)

    def _pull_file(self, archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str,
                   progress: Callable[[int], None] | None) -> str:
        url = self._file_url(archive_filename)
        with call(self.session, PEER, "GET", url, stream=True) as response:
            expected = response.headers.get("Content-Length")

            def blocks() -> Iterator[bytes]:
                received = 0
                try:
                    for block in response.iter_content(self.transfer_size):
                        received += len(block)
                        yield block
                except requests.RequestException as exc:
                    raise PeerUnavailable(PEER, url, f"the download broke after {received} bytes: {exc}") from None
                if expected is not None and received != int(expected):
                    raise PeerUnavailable(PEER, url, f"received {received} of {expected} bytes")

            return receive(blocks(), archive_filename, cart_filepath, hashval, hashtype, progress)


class HashMismatch(IntegrityError):
    """The bytes the archive sent for a file do not hash to the digest asked for."""

    def __init__(self, file_name: Any, hashtype: str, expected: str, actual: str) -> None:
        super().__init__(f"{file_name}: {hashtype} is {actual}, the cart asked for {expected}")
        self.file_name = str(file_name)
        self.hashtype = hashtype
        self.expected = expected
        self.actual = actual


def receive(blocks: Iterable[bytes], archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str,
            progress: Callable[[int], None] | None = None) -> str:
    """Write ``blocks`` to ``cart_filepath`` through a temporary file, hashing them; the file is put
    in place only if the digest matches ``hashval`` (or none is given). Return the digest."""
    temp = f"{cart_filepath}.part{os.getpid()}"
    digest = hashlib.new(hashtype)
    try:
        with open(temp, "wb") as out:
            for block in blocks:
                out.write(block)
                digest.update(block)
                if progress is not None:
                    progress(len(block))
        if hashval and digest.hexdigest() != hashval.lower():
            raise HashMismatch(archive_filename, hashtype, hashval, digest.hexdigest())
        os.replace(temp, cart_filepath)
        return digest.hexdigest()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


class LocalArchiveRequests(ArchiveRequests):
    """The same requests, answered from an archive directory on this machine.

    This is how a cart reads the ingest service's embedded archive (``embedded:``) or any
    ``file:///directory`` archive: every file is on disk, staging has nothing to do, and a pull
    is a local copy checked the same way as a download.
    """

    def __init__(self, root: str, transfer_size: int = 1 << 20) -> None:
        """Serve files from the directory ``root``."""
        self.root = os.path.realpath(root)
        self._url = f"file://{self.root}/"
        self.transfer_size = transfer_size
        self.session = None

    def _path(self, file_name: Any) -> str:
        path = os.path.realpath(os.path.join(self.root, str(file_name).lstrip("/")))
        if not path.startswith(self.root + os.sep) or not os.path.isfile(path):
            raise PeerRejected(PEER, self._url + str(file_name), "404 no such file in the archive")
        return path

    def stage_file(self, file_name: Any) -> None:
        """Check the file is there (a local archive keeps everything on disk)."""
        self._path(file_name)

    def status(self, file_name: Any) -> dict[str, Any]:
        """The file's size and times, as the archive interface would give them."""
        stat = os.stat(self._path(file_name))
        return {"message": "File was found", "filesize": str(stat.st_size),
                "ctime": str(stat.st_ctime), "mtime": formatdate(stat.st_mtime, usegmt=True),
                "bytes_per_level": f"({stat.st_size}, 0, 0, 0, 0)", "file_storage_media": "disk",
                "file": file_name}

    def _pull_file(self, archive_filename: Any, cart_filepath: str, hashval: str, hashtype: str,
                   progress: Callable[[int], None] | None) -> str:
        source = self._path(archive_filename)

        def blocks() -> Iterator[bytes]:
            with open(source, "rb") as handle:
                while block := handle.read(self.transfer_size):
                    yield block

        return receive(blocks(), archive_filename, cart_filepath, hashval, hashtype, progress)


def archive_for(url: str, transfer_size: int, embedded_path: str = "") -> ArchiveRequests:
    """The archive client for ``url``: ``http(s)://`` (the archive interface), ``file:///dir``, or
    ``embedded:`` (the directory ``embedded_path``: the embedded archive of this machine's ingest
    service, ``[archiveinterface] embedded_path``)."""
    if url.startswith("file://"):
        return LocalArchiveRequests(urlparse(url).path, transfer_size)
    if url.strip().rstrip("/") == "embedded:":
        if not embedded_path:
            raise ConfigError("[archiveinterface] url = embedded: needs embedded_path (the ingest archive)")
        return LocalArchiveRequests(embedded_path, transfer_size)
    return ArchiveRequests(url, transfer_size=transfer_size)
