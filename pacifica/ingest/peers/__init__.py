"""The four peer services behind small ports, built from the settings."""

from __future__ import annotations

import dataclasses

from ..config import Settings
from .base import ArchivePort, MetadataPort, PolicyPort, UniqueIdPort, make_session


@dataclasses.dataclass
class Peers:
    """The peers a job talks to."""

    uniqueid: UniqueIdPort
    policy: PolicyPort
    archive: ArchivePort
    metadata: MetadataPort


def build_peers(settings: Settings) -> Peers:
    """Build the HTTP clients of the four peers, sharing one session."""
    from .archive import HttpArchive
    from .metadata import HttpMetadata
    from .policy import HttpPolicy
    from .uniqueid import HttpUniqueId

    session = make_session(settings.http_timeout, settings.http_retries)
    return Peers(
        uniqueid=HttpUniqueId(settings.uniqueid_url, session),
        policy=HttpPolicy(settings.policy_url, settings.auth_header, session),
        archive=HttpArchive(settings.archive_url, session),
        metadata=HttpMetadata(settings.metadata_url, session),
    )
