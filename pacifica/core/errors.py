"""Errors every service shares.

::

    ConfigError                 the configuration is invalid (start-up only)
    ServiceError                a request or job failed; its message is what the client sees
    ├── IntegrityError          a file's bytes disagree with its size or hash
    └── PeerError               a peer service failed; names the peer and URL
        ├── PeerUnavailable     transient: refused, timed out, 5xx (worth retrying)
        │   └── ConnectionClosed    the peer had closed the connection: send again at once
        └── PeerRejected        permanent: the peer said no (4xx, or a non-success answer)

Each service roots its own errors here (ingest's ``IngestError`` is ``ServiceError``; cartd's
``CartError`` derives from it), so one ``except`` catches a peer's failure in either.
"""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is invalid; raised at start-up, never during a job."""


class ServiceError(Exception):
    """A request or job failed; ``str(err)`` is the message recorded for it."""


class IntegrityError(ServiceError):
    """A file's size or hash does not match what its metadata declares."""


class PeerError(ServiceError):
    """A peer service call failed: ``detail`` is the readable reason, and the facts code acts on
    are data, read once where the answer or the failure is mapped (``core.http``), never parsed
    back out of the text:

    - ``status``: the HTTP status of the peer's answer (None when there was no answer);
    - ``message``: what the peer said in its answer body (None for an answer without one);
    - ``os_errno``: the ``[Errno N]`` of an OS error the peer reported (the archive interface's
      posix backend reports a missing file so);
    - ``connection_lost``: the connection was reset or closed under the request.
    """

    def __init__(self, peer: str, url: str, detail: str, *, status: int | None = None, message: str | None = None,
                 os_errno: int | None = None, connection_lost: bool = False) -> None:
        super().__init__(f"{peer} service at {url}: {detail}")
        self.peer = peer
        self.url = url
        self.detail = detail
        self.status = status
        self.message = message
        self.os_errno = os_errno
        self.connection_lost = connection_lost

    def __reduce__(self):  # keep the exception picklable across Celery processes
        facts = {"status": self.status, "message": self.message, "os_errno": self.os_errno,
                 "connection_lost": self.connection_lost}
        return (_restore, (type(self), (self.peer, self.url, self.detail), facts))


def _restore(kind: type[PeerError], args: tuple[str, str, str], facts: dict) -> PeerError:
    return kind(*args, **facts)


class PeerUnavailable(PeerError):
    """The peer could not be reached or answered with a server error."""


class ConnectionClosed(PeerUnavailable):
    """The peer had closed the kept-alive connection a request went out on; the request can be
    sent again at once on a new connection."""


class PeerRejected(PeerError):
    """The peer answered and refused the request."""
