"""What a process of the service works with, built by the composition root (``bootstrap``)."""

from __future__ import annotations

import dataclasses
from typing import cast

from ...core.auth.identity import Authenticator
from ..common.settings import Settings
from ..peers import Peers
from ..peers.base import AdoptingArchivePort
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
    _stages: bool | None = dataclasses.field(default=None, init=False, repr=False)

    def stages_members(self) -> bool:
        """Whether uploads are split as they arrive (``volume.arrival``): the archive adopts
        files, from the volume's filesystem (asked once per process)."""
        if self._stages is None:
            archive = self.peers.archive
            self._stages = archive.adopts_files and cast(AdoptingArchivePort, archive).can_adopt(
                self.spool.volume_path)
        return self._stages
