"""The errors of the ingest service.

::

    IngestError                 any failure of a job (core's ServiceError)
    ├── BundleError             the body is not a readable tar
    ├── MetadataError           metadata.txt or the move document is wrong
    ├── IntegrityError          a file's bytes disagree with its metadata
    ├── UploadError             a body was refused or cut off; carries the HTTP status
    └── PeerError               a peer service failed; names the peer and URL
        ├── PeerUnavailable     transient: refused, timed out, 5xx (worth retrying)
        │   └── ConnectionClosed    the peer had closed the connection: send again at once
        └── PeerRejected        permanent: the peer said no (4xx, or a non-success answer)

An error carries no stage: ``stage_state`` records FAILED in the stage that raised it (the web
resources, in UPLOADING). Only the message is stored, never a traceback (that goes to the log).
"""

from __future__ import annotations

# The shared errors: a job fails with these as with its own (IngestError is their root).
from ...core.errors import (  # noqa: F401 - re-exported: the ingest code names them from here
    ConfigError,
    ConnectionClosed,
    IntegrityError,
    PeerError,
    PeerRejected,
    PeerUnavailable,
)
from ...core.errors import ServiceError as IngestError


class BundleError(IngestError):
    """The uploaded body cannot be read as a tar bundle."""


class MetadataError(IngestError):
    """The metadata document is malformed or disagrees with the bundle."""


class UploadError(IngestError):
    """A request body was refused or did not arrive whole; ``status`` is the HTTP answer,
    ``received`` how many bytes had arrived and ``expected`` how many were announced (if known)."""

    def __init__(self, message: str, status: int = 400, received: int = 0, expected: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.received = received
        self.expected = expected

    def __reduce__(self):
        return (type(self), (str(self), self.status, self.received, self.expected))
