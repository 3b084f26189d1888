"""What a cartd process works with, built by the composition root (``bootstrap``)."""

from __future__ import annotations

import dataclasses

from ...core.auth.identity import Authenticator
from ..common.settings import Settings
from ..peers.archive import ArchiveRequests


@dataclasses.dataclass
class Runtime:
    """Everything a cartd process works with."""

    settings: Settings
    archive: ArchiveRequests
    auth: Authenticator | None = None
