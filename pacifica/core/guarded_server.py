"""CherryPy's own HTTP server, guarded against clients that hold its threads.

cheroot gives each request a thread from a fixed pool while it reads the request's headers, and
its socket timeout (minutes, for uploads that pause) applies to each read. A client that sends a
header line every few seconds could therefore hold a thread for ever, and a few hundred such
connections take the server. Here:

- the request line and headers must arrive within ``header_timeout`` seconds in all (the body's
  reads keep the long socket timeout);
- one client address may hold at most ``per_client`` threads at once; a request beyond that is
  answered 429 at once. Loopback and the configured trusted proxies are exempt: every user of an
  authenticating proxy comes from its address, and the proxy limits its own clients.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import socket
import threading
import time
from typing import Any

import cheroot.server
from cherrypy._cpwsgi_server import CPWSGIHTTPRequest, CPWSGIServer

logger = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0
TOO_MANY = {"status": "429 Too Many Requests",
            "message": "too many requests at once from this address; try again shortly"}


class _DeadlineReader:
    """The connection's reader while headers are read: every read ends by the deadline."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: float) -> None:
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self._sock.settimeout(remaining)

    def readline(self, size: int = -1) -> bytes:
        self._arm()
        return self._raw.readline(size)

    def read(self, size: int = -1) -> bytes:
        self._arm()
        return self._raw.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class GuardedRequest(CPWSGIHTTPRequest):
    """A request whose request line and headers must arrive within the server's header timeout."""

    def parse_request(self) -> None:
        conn = self.conn
        original = conn.rfile
        conn.rfile = _DeadlineReader(original, conn.socket, time.monotonic() + conn.server.header_timeout)
        try:
            super().parse_request()
        finally:
            conn.rfile = original
            conn.socket.settimeout(conn.server.timeout)


    def send_headers(self) -> None:
        # A response that says "Connection: close" (a body refused before it was read) must close
        # the connection: cheroot only passes the header on and would read the rest of the body as
        # the next request on it, a smuggled one with whatever headers it carries.
        if any(key.lower() == b"connection" and value.strip().lower() == b"close" for key, value in self.outheaders):
            self.close_connection = True
        super().send_headers()


class GuardedConnection(cheroot.server.HTTPConnection):
    """A connection that counts against its client address's share of the threads."""

    RequestHandlerClass = GuardedRequest

    def communicate(self) -> bool:
        server: GuardedServer = self.server
        address = server.client_key(self.socket)
        if address is None:
            return super().communicate()
        if not server.enter(address):
            self._too_many(address)
            return False
        try:
            return super().communicate()
        finally:
            server.leave(address)

    def _too_many(self, address: str) -> None:
        logger.warning("refused a request from %s: it already holds %d of the server's threads", address,
                       self.server.per_client)
        body = json.dumps(TOO_MANY).encode()
        head = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        try:
            self.socket.settimeout(1.0)
            self.socket.sendall(head + body)
        except OSError:
            pass


class ClientShares:
    """How many threads each client address holds; at most ``per_client`` at once. Loopback and
    the ``exempt`` networks (trusted proxies) are not counted."""

    def __init__(self, per_client: int, exempt: tuple[str, ...] = ()) -> None:
        self.per_client = per_client
        self.exempt = tuple(ipaddress.ip_network(item, strict=False) for item in exempt)
        self._active: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def key(self, address: str) -> str | None:
        """The address whose share a request from ``address`` uses; None when it is exempt."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        ip = getattr(ip, "ipv4_mapped", None) or ip
        if ip.is_loopback or any(ip in network for network in self.exempt):
            return None
        return str(ip)

    def enter(self, address: str) -> bool:
        """Take a thread for ``address``; False when it holds its share already."""
        with self._lock:
            if self._active[address] >= self.per_client:
                return False
            self._active[address] += 1
            return True

    def leave(self, address: str) -> None:
        """Give back a thread of ``address``."""
        with self._lock:
            self._active[address] -= 1
            if self._active[address] <= 0:
                del self._active[address]


def share_of(threads: int) -> int:
    """A client's share of ``threads``: a quarter, at least one."""
    return max(1, threads // 4)


class GuardedServer(CPWSGIServer):
    """CherryPy's WSGI server with a header deadline and a per-client share of the threads."""

    def __init__(self, server_adapter: Any, exempt: tuple[str, ...] = ()) -> None:
        super().__init__(server_adapter)
        self.ConnectionClass = GuardedConnection
        self.header_timeout = float(getattr(server_adapter, "header_timeout", HEADER_TIMEOUT))
        threads = int(server_adapter.thread_pool or 10)
        self.per_client = int(getattr(server_adapter, "per_client_threads", 0) or share_of(threads))
        self.shares = ClientShares(self.per_client, exempt)

    def client_key(self, sock: socket.socket) -> str | None:
        """The address whose share this connection uses; None when it is exempt."""
        try:
            peer = sock.getpeername()
        except OSError:
            return None
        if not isinstance(peer, tuple):
            return None  # a UNIX socket
        return self.shares.key(peer[0])

    def enter(self, address: str) -> bool:
        """Take a thread for ``address``; False when it holds its share already."""
        return self.shares.enter(address)

    def leave(self, address: str) -> None:
        """Give back a thread of ``address``."""
        self.shares.leave(address)
