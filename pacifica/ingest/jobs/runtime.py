"""What a process of the service works with, built by the composition root (``bootstrap``)."""

from __future__ import annotations

import dataclasses

from ...core.auth.identity import Authenticator
from ..common.settings import Settings
from ..peers import Peers
from ..volume.resumable import TusStore
from ..volume.spool import Spool


@dataclasses.dataclass
class Runtime:
    """Everything a process of the service works with, built from one ``Settings``."""

    settings: Settings
    peers: Peers
    spool: Spool
    uploads: TusStore
    auth: Authenticator | None = None
