"""The errors of the ingest service.

::

    IngestError                 any failure of a job; carries the stage it belongs to
    ├── BundleError             the body is not a readable tar        ('open tar')
    ├── MetadataError           metadata.txt or the move document is wrong ('load metadata')
    ├── IntegrityError          a file's bytes disagree with its metadata ('ingest files')
    ├── UploadError             a body was refused or cut off (UPLOADING); carries the HTTP status
    └── PeerError               a peer service failed; names the peer and URL
        ├── PeerUnavailable     transient: refused, timed out, 5xx (worth retrying)
        │   └── ConnectionClosed    the peer had closed the connection: send again at once
        └── PeerRejected        permanent: the peer said no (4xx, or a non-success answer)

The pipeline turns any of these into a FAILED state row naming the stage; only the
message is stored, never a traceback (that goes to the log).
"""

from __future__ import annotations

from ..core.errors import ConfigError as _ConfigError


class IngestError(Exception):
    """A job failed; ``str(err)`` is the message stored in the job's ``exception``."""


class BundleError(IngestError):
    """The uploaded body cannot be read as a tar bundle."""


class MetadataError(IngestError):
    """The metadata document is malformed or disagrees with the bundle."""


class IntegrityError(IngestError):
    """A file's size or hash does not match what its metadata declares."""


class PeerError(IngestError):
    """A peer service call failed."""

    def __init__(self, peer: str, url: str, detail: str) -> None:
        super().__init__(f"{peer} service at {url}: {detail}")
        self.peer = peer
        self.url = url
        self.detail = detail

    def __reduce__(self):  # keep the exception picklable across Celery processes
        return (type(self), (self.peer, self.url, self.detail))


class PeerUnavailable(PeerError):
    """The peer could not be reached or answered with a server error."""


class ConnectionClosed(PeerUnavailable):
    """The peer had closed the kept-alive connection a request went out on; the request can be
    sent again at once on a new connection."""


class PeerRejected(PeerError):
    """The peer answered and refused the request."""


class UploadError(IngestError):
    """A request body was refused or did not arrive whole; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self):
        return (type(self), (str(self), self.status))


# One class for both services, so either's configuration error is caught the same way.
ConfigError = _ConfigError
