"""The ingest service as the agent talks to it: ``/validate``, tus uploads under ``/uploads/``
(with the published ``tuspy`` client), ``/get_state``.

Authentication is one of the service's API tokens (``Authorization: Bearer``); without one, the
service takes the agent for its loopback default user (a development setup).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from .bundle import BundleStream, layout
from .journal import SENDING, SENT, Bundle, Journal

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """The service could not be asked, or answered an error that may pass."""


class Throttle:
    """At most ``rate`` bytes a second over an upload (0: no limit). The agent's own: it imports
    nothing of the services, to stay small on an instrument PC."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.count = 0

    def take(self, count: int) -> None:
        if self.rate <= 0:
            return
        self.count += count
        ahead = self.count / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


class ThrottledStream(BundleStream):
    """A bundle stream whose reads keep to a ``Throttle``."""

    def __init__(self, pieces, throttle: Throttle) -> None:
        super().__init__(pieces)
        self.throttle = throttle

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.throttle.take(len(data))
        return data


class Service:
    """The ingest service at ``url`` (``http://host:8066``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60, chunk_size: int = 8 << 20,
                 rate: int = 0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.rate = rate
        self.session = requests.Session()
        self.session.headers.update(self.headers)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise Unavailable(f"{self.url} could not be reached: {exc.__class__.__name__}") from None

    def validate(self, metadata: bytes) -> list[str]:
        """The problems ``/validate`` finds in a bundle's metadata (none: it would be accepted)."""
        response = self._call("POST", "/validate", data=metadata, headers={"Content-Type": "application/json"})
        if response.status_code in (200, 422):
            return list(response.json().get("problems", []))
        raise Unavailable(f"/validate answered {response.status_code}: {response.text[:300]}")

    def state(self, job_id: int) -> dict[str, Any]:
        """The job's state (``get_state``)."""
        response = self._call("GET", "/get_state", params={"job_id": job_id})
        if response.status_code != 200:
            raise Unavailable(f"get_state of job {job_id} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def files(self, job_id: int) -> list[dict[str, Any]]:
        """The files the service archived for job ``job_id``, with the digest it recorded for each
        and the size the archive holds of each now (the service asks it)."""
        found: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            params: dict[str, Any] = {"job_id": job_id, "files": "true", "verify": "true"}
            if after is not None:
                params["files_after"] = after
            response = self._call("GET", "/get_state", params=params)
            if response.status_code != 200:
                raise Unavailable(f"the files of job {job_id}: {response.status_code}: {response.text[:300]}")
            answer = response.json()
            found.extend(answer.get("files", []))
            if not answer.get("files_more") or not answer.get("files"):
                return found
            after = int(answer["files"][-1]["file_id"])

    def send(self, bundle: Bundle, journal: Journal, progress: Callable[[int, int], None] | None = None) -> int:
        """Upload ``bundle`` (or go on with its upload, from the offset the service holds); return
        its job id. Its URL is in the journal before its first byte is sent."""
        stream = ThrottledStream(layout(bundle.files, bundle.metadata, bundle.mtime), Throttle(self.rate))
        client = TusClient(self.url + "/uploads/", headers=self.headers)
        try:
            uploader = client.uploader(file_stream=stream, chunk_size=self.chunk_size, url=bundle.url,
                                       metadata={"filename": f"{bundle.name}.tar", **_owner(bundle)})
        except TusCommunicationError as exc:
            if exc.status_code != 404:
                raise Unavailable(f"the upload of bundle {bundle.id} could not be resumed: {exc}") from None
            # The service no longer has it (ended, or expired and its job failed): a new upload.
            logger.warning("bundle %s: the service no longer holds its upload %s; starting it again", bundle.id,
                           bundle.url)
            uploader = client.uploader(file_stream=stream, chunk_size=self.chunk_size,
                                       metadata={"filename": f"{bundle.name}.tar", **_owner(bundle)})
        try:
            if uploader.url is None:
                url = uploader.create_url()
                uploader.set_url(url)
                journal.update(bundle.id, url=url, job_id=job_of(url), state=SENDING)
            while uploader.offset < bundle.length:
                uploader.upload_chunk()
                journal.progress(bundle.id, uploader.offset)
                if progress is not None:
                    progress(uploader.offset, bundle.length)
        except TusCommunicationError as exc:
            raise Unavailable(f"bundle {bundle.id}: the upload stopped: {exc}") from None
        finally:
            stream.close()
        job_id = job_of(str(uploader.url))
        journal.update(bundle.id, state=SENT, job_id=job_id, sent_bytes=bundle.length)
        return job_id


def _owner(bundle: Bundle) -> dict[str, str]:
    """The project and instrument the bundle's metadata names, for the creation's quota check."""
    values = {str(item["destinationTable"]).partition(".")[2]: item.get("value")
              for item in json.loads(bundle.metadata)
              if str(item.get("destinationTable", "")).startswith("Transactions.")}
    return {key: str(values[key]) for key in ("project", "instrument") if values.get(key) is not None}


def job_of(url: str) -> int:
    """The job id of an upload's URL (``.../uploads/<job id>-<secret>``)."""
    return int(url.rstrip("/").rsplit("/", 1)[1].split("-", 1)[0])
