"""Plain-HTTP requests on ``http.client``, one kept connection per thread and origin.

``lean_call`` sends an archive's PUTs this way when the peer is reached by plain ``http://``
without a proxy. urllib3's request and answer handling (its pool, retry and timeout objects,
header containers and response wrapper) cost the sending thread about 0.4 ms a request more
than a bare ``http.client`` exchange: for 1,000 files of 4 KiB sent to the published archive
interface that is 1.4-2.0 s against 1.0-1.5 s (``benchmarks/run.py``'s archive-alone client is
the bare exchange). The semantics are the session's: its timeout for connecting and for each
read, its retries (with backoff) of a connection that could not be made, none of a request once
sent; an idle kept connection that the server has closed is found and replaced before use.
"""

from __future__ import annotations

import http.client
import os
import select
import threading
import time
from collections.abc import Iterable
from email.message import Message

from urllib3.util.retry import Retry

# An answer's body is read up to this many bytes (an archive's answers are a few hundred); a
# longer one is cut there and its connection closed rather than read on.
BODY_LIMIT = 64 * 1024


class DirectResponse:
    """An answer: its status, its headers (read case-insensitively with ``get``) and its body."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: Message, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class _Connections(threading.local):
    """This thread's kept connections, by (host, port), and the process they were opened in."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.open: dict[tuple[str, int], http.client.HTTPConnection] = {}


_CONNECTIONS = _Connections()


def _connection(host: str, port: int, timeout: float | None) -> http.client.HTTPConnection:
    """This thread's connection to ``host:port``: the kept one if the server has not closed it."""
    if _CONNECTIONS.pid != os.getpid():
        # A forked child must not talk on its parent's sockets; closing its copies of them
        # (no shutdown) leaves the parent's connections as they were.
        close_kept()
        _CONNECTIONS.pid = os.getpid()
    key = (host, port)
    connection = _CONNECTIONS.open.get(key)
    if connection is not None and connection.sock is not None and _dropped(connection.sock):
        connection.close()
    if connection is None:
        connection = _CONNECTIONS.open[key] = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    return connection


def close_kept() -> None:
    """Close this thread's kept connections."""
    for connection in _CONNECTIONS.open.values():
        connection.close()
    _CONNECTIONS.open.clear()


def _dropped(sock) -> bool:
    """Whether an idle kept connection is readable: closed by the server (or sent something
    unasked), so not to be used again."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _connect(connection: http.client.HTTPConnection, retry: Retry) -> None:
    """Open ``connection`` if it is not open, trying again as ``retry`` allows connections
    that could not be made (refused, timed out)."""
    attempt = 0
    while connection.sock is None:
        try:
            connection.connect()
        except OSError:
            connection.close()
            if attempt >= (retry.connect if retry.connect is not None else retry.total or 0):
                raise
            attempt += 1
            # urllib3's backoff: nothing before the first retry, then factor x 2^(n-1).
            if attempt > 1:
                time.sleep(min(retry.backoff_factor * (2 ** (attempt - 1)), Retry.DEFAULT_BACKOFF_MAX))


Block = bytes | bytearray | memoryview


def request(host: str, port: int, method: str, target: str, body: Iterable[Block] | Block | None,
            headers: dict[str, str], timeout: float | None, retry: Retry, close: bool) -> DirectResponse:
    """Send one request and read its answer; ``OSError`` or ``http.client.HTTPException`` if
    the exchange failed (the connection is then closed). With ``close``, or when the server
    says it will close, the connection is not kept."""
    connection = _connection(host, port, timeout)
    _connect(connection, retry)
    try:
        # http.client frames the body as requests and urllib3 do: the length of bytes, 0 for
        # an empty POST, PUT or PATCH, the caller's Content-Length for an iterable of blocks.
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(BODY_LIMIT)
        if close or response.will_close or not response.isclosed():
            connection.close()  # asked to, said by the server, or a body longer than read
    except BaseException:
        connection.close()
        raise
    return DirectResponse(response.status, response.headers, data)
