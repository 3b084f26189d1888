"""What the pipeline needs from each peer service, and the one HTTP session they share.

Each port is a ``typing.Protocol``; the HTTP adapters in the sibling modules speak the
published wire protocols. Every HTTP call goes through ``call()``, which applies the
session's timeout and maps failures onto ``errors.PeerUnavailable`` (transient) and
``errors.PeerRejected`` (permanent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import PeerRejected, PeerUnavailable

logger = logging.getLogger(__name__)


class UniqueIdPort(Protocol):
    """Hands out ranges of ids that are never reused."""

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` consecutive ids of ``mode`` ('upload_job' or 'file'); return the first."""


class PolicyPort(Protocol):
    """Decides whether a user may ingest a metadata document."""

    def check_ingest(self, metadata: list[dict[str, Any]], user: str) -> None:
        """Return if allowed; raise ``PeerRejected`` with the policy's reason if not."""


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


class MetadataPort(Protocol):
    """Records the metadata of an ingested transaction."""

    def ingest(self, metadata: list[dict[str, Any]]) -> None:
        """Store ``metadata``; raise ``PeerRejected`` with the reason if it is refused."""


class TimeoutSession(requests.Session):
    """A ``requests.Session`` whose requests time out by default."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__()
        self.default_timeout = timeout or None

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, **kwargs)


def make_session(timeout: float, retries: int, pool_size: int = 16) -> requests.Session:
    """Build the session every HTTP peer uses: pooled keep-alive connections, a timeout, and
    bounded retries with backoff for connections that could not be made (never for a request
    whose body may have been partly sent)."""
    session = TimeoutSession(timeout)
    retry = Retry(total=retries, connect=retries, read=0, status=0, other=0,
                  backoff_factor=0.2, allowed_methods=None, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _detail(response: requests.Response) -> str:
    """Return the most readable reason a peer gave for an error response."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f"HTTP {response.status_code}: {text[:500]}" if text else f"HTTP {response.status_code}"
    if isinstance(body, dict):
        message = body.get("message") or body.get("status") or json.dumps(body)[:500]
        # CherryPy services put the real reason of a 500 in the last line of their traceback.
        trace = body.get("traceback")
        if isinstance(trace, str) and trace.strip():
            message = f"{message} ({trace.strip().splitlines()[-1][:300]})"
        return f"HTTP {response.status_code}: {message}"
    return f"HTTP {response.status_code}: {json.dumps(body)[:500]}"


def call(session: requests.Session, peer: str, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Make one HTTP request to a peer and return its 2xx response, or raise a ``PeerError``."""
    try:
        response = session.request(method, url, **kwargs)
    except requests.Timeout as exc:
        raise PeerUnavailable(peer, url, f"timed out ({exc.__class__.__name__})") from None
    except requests.ConnectionError as exc:
        raise PeerUnavailable(peer, url, f"connection failed: {_root_cause(exc)}") from None
    except requests.RequestException as exc:
        raise PeerUnavailable(peer, url, f"request failed: {exc}") from None
    if response.status_code >= 500:
        raise PeerUnavailable(peer, url, _detail(response))
    if response.status_code >= 400:
        raise PeerRejected(peer, url, _detail(response))
    return response


def json_body(peer: str, url: str, response: requests.Response) -> Any:
    """Decode a peer's JSON answer, or raise ``PeerRejected`` saying it was not JSON."""
    try:
        return response.json()
    except ValueError:
        raise PeerRejected(peer, url, f"answer is not JSON: {response.text[:200]!r}") from None


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return str(exc) or exc.__class__.__name__
