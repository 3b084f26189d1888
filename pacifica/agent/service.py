"""The ingest service as the agent talks to it: ``/validate``, tus uploads under ``/uploads/``
(with the published ``tuspy`` client), ``/get_state``.

Authentication is one of the service's API tokens (``Authorization: Bearer``); without one, the
service takes the agent for its loopback default user (a development setup).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from .bundle import BundleStream, SeekableReader, layout
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


TUS = {"Tus-Resumable": "1.0.0"}


class RangeStream(SeekableReader):
    """The bytes ``start`` to ``end`` of a bundle stream, as a file of their own (one partial
    upload of a bundle sent in parallel streams)."""

    def __init__(self, stream: BundleStream, start: int, end: int) -> None:
        super().__init__(end - start)
        self.stream = stream
        self.start = start

    def read(self, size: int = -1) -> bytes:
        left = self.length - self.position
        size = left if size is None or size < 0 else min(size, left)
        self.stream.seek(self.start + self.position)
        data = self.stream.read(size)
        self.position += len(data)
        return data

    def close(self) -> None:
        self.stream.close()
        super().close()


def split(length: int, streams: int) -> list[list[Any]]:
    """``length`` bytes in ``streams`` ranges of nearly equal size, each [start, end, url]."""
    streams = max(1, min(streams, length))
    step = -(-length // streams)
    return [[start, min(length, start + step), None] for start in range(0, length, step)]


class Service:
    """The ingest service at ``url`` (``http://host:8066``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60, chunk_size: int = 8 << 20,
                 rate: int = 0, streams: int = 1) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.rate = rate
        self.streams = max(1, streams)
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
        its job id. Its URL is in the journal before its first byte is sent. With ``streams``
        above 1 (or a bundle begun that way), its ranges go as partial uploads in parallel."""
        if (self.streams > 1 or bundle.parts) and not bundle.url:
            return self._send_parallel(bundle, journal, progress)
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


    def _send_parallel(self, bundle: Bundle, journal: Journal,
                       progress: Callable[[int, int], None] | None) -> int:
        """Send ``bundle`` as partial uploads, one per range, in parallel threads, then create the
        final upload that joins them (the job). Each partial's URL is in the journal before its
        first byte is sent; after a restart each goes on from the offset the service holds."""
        parts = bundle.parts or split(bundle.length, self.streams)
        journal.update(bundle.id, parts=parts, state=SENDING)
        for part in parts:
            if part[2] is None:
                created = self._call("POST", "/uploads/", headers={**TUS, "Upload-Concat": "partial",
                                                                  "Upload-Length": str(part[1] - part[0])})
                if created.status_code != 201:
                    raise Unavailable(f"a partial upload could not be created: {created.status_code} "
                                      f"{created.text[:300]}")
                part[2] = created.headers["Location"]
                journal.update(bundle.id, parts=parts)
        done = [0] * len(parts)
        lock = threading.Lock()
        errors: list[BaseException] = []
        pieces = layout(bundle.files, bundle.metadata, bundle.mtime)
        client = TusClient(self.url + "/uploads/", headers=self.headers)

        def send_part(index: int) -> None:
            start, end, url = parts[index]
            stream = RangeStream(ThrottledStream(pieces, Throttle(self.rate // len(parts))), start, end)
            try:
                uploader = client.uploader(file_stream=stream, chunk_size=self.chunk_size, url=url)
                while uploader.offset < end - start:
                    uploader.upload_chunk()
                    with lock:
                        done[index] = uploader.offset
                        journal.progress(bundle.id, sum(done))
                        if progress is not None:
                            progress(sum(done), bundle.length)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                errors.append(exc)
            finally:
                stream.close()

        threads = [threading.Thread(target=send_part, args=(index,), name=f"part-{index}")
                   for index in range(len(parts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise Unavailable(f"bundle {bundle.id}: a stream stopped: {errors[0]}")
        final = self._call("POST", "/uploads/", headers={**TUS, "Upload-Concat": "final;" + " ".join(
            part[2] for part in parts), **_owner_headers(bundle)})
        if final.status_code != 201:
            raise Unavailable(f"bundle {bundle.id}: the final upload was refused: {final.status_code} "
                              f"{final.text[:300]}")
        url = final.headers["Location"]
        job_id = job_of(url)
        journal.update(bundle.id, url=url, job_id=job_id, state=SENT, sent_bytes=bundle.length)
        return job_id

def _owner_headers(bundle: Bundle) -> dict[str, str]:
    """``Upload-Metadata`` naming the bundle's project and instrument (base64 values, as tus has them)."""
    pairs = [f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in _owner(bundle).items()]
    return {"Upload-Metadata": ",".join(pairs)} if pairs else {}


def _owner(bundle: Bundle) -> dict[str, str]:
    """The project and instrument the bundle's metadata names, for the creation's quota check."""
    values = {str(item["destinationTable"]).partition(".")[2]: item.get("value")
              for item in json.loads(bundle.metadata)
              if str(item.get("destinationTable", "")).startswith("Transactions.")}
    return {key: str(values[key]) for key in ("project", "instrument") if values.get(key) is not None}


def job_of(url: str) -> int:
    """The job id of an upload's URL (``.../uploads/<job id>-<secret>``)."""
    return int(url.rstrip("/").rsplit("/", 1)[1].split("-", 1)[0])
