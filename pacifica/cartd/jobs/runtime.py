"""What a cartd process works with, built by the composition root (``bootstrap``)."""

from __future__ import annotations

import dataclasses

from ...core.auth.identity import Authenticator
from ..common.settings import Settings
from ..peers.base import CartArchivePort


@dataclasses.dataclass
class Runtime:
    """Everything a cartd process works with."""

    settings: Settings
    archive: CartArchivePort
    auth: Authenticator | None = None
