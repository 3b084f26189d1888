"""The HTTP session every peer client uses, and the mapping of its failures onto errors.

Every HTTP call goes through ``call()`` (or ``lean_call()``), which applies the session's
timeout and maps failures onto ``PeerUnavailable`` (transient) and ``PeerRejected`` (permanent).
"""

from __future__ import annotations

import functools
import http.client
import itertools
import json
import logging
import re
from collections.abc import Iterator
from typing import Any, cast

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import direct_http
from .errors import PeerError, PeerRejected, PeerUnavailable
from .metrics import peer_request

logger = logging.getLogger(__name__)

# What ``lean_call`` answers with: the status, the headers (``get``) and the body (``data``).
Answer = urllib3.BaseHTTPResponse | direct_http.DirectResponse


class TimeoutSession(requests.Session):
    """A ``requests.Session`` whose requests time out by default."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__()
        self.default_timeout = timeout or None

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """A request with the session's timeout unless it names one."""
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def make_session(timeout: float, retries: int, pool_size: int = 16, read_retries: int = 0) -> requests.Session:
    """Build the session every HTTP peer uses: pooled keep-alive connections, a timeout, and
    bounded retries with backoff for connections that could not be made (never for a request
    whose body may have been partly sent). ``read_retries`` also resends a request whose
    connection dropped after it was sent: only for clients whose every request is idempotent."""
    session = TimeoutSession(timeout)
    retry = Retry(total=retries + read_retries, connect=retries, read=read_retries, status=0, other=0,
                  backoff_factor=0.2, allowed_methods=None, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def describe_error(status: int, content: bytes) -> str:
    """Return the most readable reason a peer gave for an error answer (status and body)."""
    text = content.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        text = text.strip()
        return f"HTTP {status}: {text[:500]}" if text else f"HTTP {status}"
    if isinstance(body, dict):
        message = body.get("message") or body.get("status") or json.dumps(body)[:500]
        # CherryPy services put the real reason of a 500 in the last line of their traceback.
        trace = body.get("traceback")
        if isinstance(trace, str) and trace.strip():
            message = f"{message} ({trace.strip().splitlines()[-1][:300]})"
        return f"HTTP {status}: {message}"
    return f"HTTP {status}: {json.dumps(body)[:500]}"


# Exceptions that a CherryPy service raises from the request it was given, not from its own
# state: its 500 with one of these as the traceback's last line is a refusal of that request
# (pacifica-metadata 0.13.0 answers "ValueError: Invalid metadata for file N" so), and sending
# the same request again would only be refused again.
REFUSAL_EXCEPTIONS = ("ValueError", "KeyError", "TypeError", "IndexError", "AttributeError",
                      "IntegrityError", "DataError", "UniqueViolation", "DoesNotExist", "JSONDecodeError")


def refusal_in_500(content: bytes) -> bool:
    """Whether a 500 answer's body is a traceback ending in one of ``REFUSAL_EXCEPTIONS``."""
    try:
        body = json.loads(content.decode("utf-8", "replace"))
    except ValueError:
        return False
    trace = body.get("traceback") if isinstance(body, dict) else None
    if not isinstance(trace, str) or not trace.strip():
        return False
    last = trace.strip().splitlines()[-1]
    name = last.split(":", 1)[0].rsplit(".", 1)[-1].strip()
    return name in REFUSAL_EXCEPTIONS


def call(session: requests.Session, peer: str, method: str, url: str, refusals_in_500: bool = False,
         **kwargs: Any) -> requests.Response:
    """Make one HTTP request to a peer and return its 2xx response, or raise a ``PeerError``.

    With ``refusals_in_500``, a 500 whose traceback ends in a refusal (see ``refusal_in_500``)
    raises ``PeerRejected``: such a peer says no that way."""
    with peer_request(peer):
        try:
            response = session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise transport_error(peer, url, exc) from None
        if response.status_code < 400:
            # A success's body is the caller's to read: with ``stream=True`` (a file of gigabytes)
            # reading ``content`` here would hold all of it in memory.
            return response
        refused = answer_error(peer, url, response.status_code, _error_body(response), refusals_in_500)
        if refused is not None:
            raise refused
        return response


# How much of a peer's error answer is read to say why it refused.
ERROR_BODY_LIMIT = 64 * 1024


def _error_body(response: requests.Response) -> bytes:
    """The first ``ERROR_BODY_LIMIT`` bytes of an error answer (a peer may send any amount)."""
    try:
        return b"".join(itertools.islice(response.iter_content(8192), ERROR_BODY_LIMIT // 8192))
    except requests.RequestException:
        return b""
    finally:
        response.close()


def lean_call(session: requests.Session, peer: str, method: str, url: str, body: Any = None,
              headers: dict[str, str] | None = None, close: bool = False) -> Answer:
    """``call`` for the hot path: the same timeout and retries as the session, without requests'
    per-request work (cookies, hooks, netrc and proxy lookups in the environment), which costs
    as much CPU as the archive interface spends on a small file. A plain ``http://`` peer is
    asked on ``http.client`` directly (``direct_http``), any other through the session's pool.

    With ``close``, the connection is closed after the answer instead of being kept for the
    next request (for a server that closes it anyway without saying so)."""
    adapter = cast(HTTPAdapter, session.get_adapter(url))  # every peer session mounts HTTPAdapters
    if session.proxies or (session.trust_env and _environment_proxies("/".join(url.split("/", 3)[:3]))):
        return _as_urllib3(call(session, peer, method, url, data=body, headers=headers))
    with peer_request(peer):
        parsed = urllib3.util.parse_url(url)
        if parsed.scheme == "http" and parsed.host:
            return _direct_call(session, adapter, peer, method, url, parsed, body, headers, close)
        return _lean_call(session, adapter, peer, method, url, body, headers, close)


def _direct_call(session: requests.Session, adapter: HTTPAdapter, peer: str, method: str, url: str,
                 parsed: urllib3.util.Url, body: Any, headers: dict[str, str] | None,
                 close: bool) -> direct_http.DirectResponse:
    try:
        response = direct_http.request(parsed.host or "", parsed.port or 80, method, parsed.request_uri, body,
                                       headers or {}, getattr(session, "default_timeout", None),
                                       adapter.max_retries, close)
    except (OSError, http.client.HTTPException) as exc:
        raise transport_error(peer, url, exc) from None
    refused = answer_error(peer, url, response.status, response.data)
    if refused is not None:
        raise refused
    return response


def _lean_call(session: requests.Session, adapter: HTTPAdapter, peer: str, method: str, url: str, body: Any,
               headers: dict[str, str] | None, close: bool) -> urllib3.BaseHTTPResponse:
    """``lean_call`` through the session's pool (``https://``)."""
    # With ``close``, a pool of its own for this one request, closed after the answer: a
    # connection given back to the shared pool would be handed to the next request half-dead.
    pool = urllib3.connection_from_url(url, maxsize=1) if close else adapter.poolmanager.connection_from_url(url)
    timeout = getattr(session, "default_timeout", None)
    try:
        response = pool.urlopen(method, urllib3.util.parse_url(url).request_uri, body=body, headers=headers,
                                retries=adapter.max_retries, redirect=False, assert_same_host=False,
                                timeout=urllib3.Timeout(connect=timeout, read=timeout), preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        raise transport_error(peer, url, exc) from None
    finally:
        if close:
            pool.close()
    refused = answer_error(peer, url, response.status, response.data)
    if refused is not None:
        raise refused
    return response


@functools.lru_cache(maxsize=64)
def _environment_proxies(origin: str) -> bool:
    """Whether the environment sends requests to ``origin`` (scheme://host:port) through a proxy."""
    return bool(requests.utils.get_environ_proxies(origin + "/"))


def _as_urllib3(response: requests.Response) -> urllib3.BaseHTTPResponse:
    return urllib3.HTTPResponse(body=response.content, headers=dict(response.headers), status=response.status_code,
                                preload_content=True)


def json_body(peer: str, url: str, response: requests.Response) -> Any:
    """Decode a peer's JSON answer, or raise ``PeerRejected`` saying it was not JSON."""
    try:
        return response.json()
    except ValueError:
        raise PeerRejected(peer, url, f"answer is not JSON: {response.text[:200]!r}") from None


# Every failure of the HTTP clients (requests in ``call``, http.client or urllib3 in ``lean_call``), most
# specific first, and what it says of a peer call. The one place a foreign error becomes ours.
TRANSPORT_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (requests.Timeout, "timed out"),
    (urllib3.exceptions.TimeoutError, "timed out"),
    (requests.ConnectionError, "connection failed"),
    (urllib3.exceptions.HTTPError, "connection failed"),
    (requests.RequestException, "request failed"),
    (TimeoutError, "timed out"),  # http.client in ``lean_call`` (socket.timeout is TimeoutError)
    (http.client.HTTPException, "connection failed"),
    (OSError, "connection failed"),
)
# Causes that mean the connection was lost under the request: the peer reset or closed it.
CONNECTION_LOST = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, http.client.RemoteDisconnected)
_ERRNO = re.compile(r"\[Errno (\d+)\]")


def transport_error(peer: str, url: str, exc: BaseException) -> PeerUnavailable:
    """The ``PeerUnavailable`` a failure of the HTTP client means (``TRANSPORT_FAILURES``)."""
    what = next((meaning for kind, meaning in TRANSPORT_FAILURES if isinstance(exc, kind)), "request failed")
    causes = list(_causes(exc))
    if what == "timed out":
        detail = f"timed out ({exc.__class__.__name__})"
    else:
        root = causes[-1]
        detail = f"{what}: {str(root) or root.__class__.__name__}"
    return PeerUnavailable(peer, url, detail, connection_lost=any(isinstance(cause, CONNECTION_LOST)
                                                                  for cause in causes))


def answer_error(peer: str, url: str, status: int, content: bytes, refusals_in_500: bool = False) -> PeerError | None:
    """The ``PeerError`` an answer of ``status`` with ``content`` means, or None for a success:
    ``PeerUnavailable`` for a server error (unless, with ``refusals_in_500``, its traceback ends
    in a refusal: see ``refusal_in_500``), ``PeerRejected`` for a client error. What the peer
    said and any ``[Errno N]`` it reported become the error's data."""
    if status < 400:
        return None
    text = content.decode("utf-8", "replace").strip()
    said = os_errno = None
    if text:
        said = text[:2000]
        found = _ERRNO.search(text)
        os_errno = int(found.group(1)) if found else None
    kind = PeerUnavailable if status >= 500 and not (refusals_in_500 and status == 500
                                                     and refusal_in_500(content)) else PeerRejected
    return kind(peer, url, describe_error(status, content), status=status, message=said, os_errno=os_errno)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (its cause and context, a retry's reason, exceptions among its
    arguments), the innermost last."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None),
                 *(arg for arg in current.args if isinstance(arg, BaseException))]
        pending.extend(item for item in inner if isinstance(item, BaseException))
