"""The four peer services behind small ports, chosen by their configured URL.

``embedded:`` selects the built-in implementation (ids and metadata in this service's own
database, the archive in ``{data_dir}/archive``, a policy that only checks structure);
``http://`` or ``https://`` selects the Pacifica service at that URL; the archive also takes
``file:///absolute/directory`` for a local archive elsewhere.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ...core.http import make_session
from ..common.errors import ConfigError
from ..common.settings import EMBEDDED, Settings
from .archive import ArchiveGate, HttpArchive
from .base import ArchivePort, MetadataPort, PolicyPort, UniqueIdPort
from .local_archive import LocalArchive
from .metadata import EmbeddedMetadata, HttpMetadata
from .policy import EmbeddedPolicy, HttpPolicy
from .uniqueid import EmbeddedUniqueId, HttpUniqueId

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Peers:
    """The peers a job talks to."""

    uniqueid: UniqueIdPort
    policy: PolicyPort
    archive: ArchivePort
    metadata: MetadataPort


def _kind(url: str, key: str, allow_file: bool = False) -> str:
    if url == EMBEDDED:
        return "embedded"
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return "http"
    if allow_file and parsed.scheme == "file" and parsed.path.startswith("/") and not parsed.netloc:
        return "file"
    accepted = "'embedded:', http://host[:port]/..." + (" or file:///directory" if allow_file else "")
    raise ConfigError(f"{key} = {url!r} is not a peer URL: use {accepted}")


def validate_urls(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the first peer URL that is neither embedded nor HTTP."""
    _kind(settings.uniqueid_url, "[uniqueid] url")
    _kind(settings.policy_url, "[policy] ingest_url")
    _kind(settings.archive_url, "[archiveinterface] url", allow_file=True)
    _kind(settings.metadata_url, "[metadata] ingest_url")


def build_peers(settings: Settings) -> Peers:
    """Build the four peers from ``settings``; the HTTP ones share one session."""
    validate_urls(settings)
    session = make_session(settings.http_timeout, settings.http_retries)

    def pick(url: str, embedded: Callable[[], Any], http: Callable[[], Any]) -> Any:
        return embedded() if url == EMBEDDED else http()

    archive_kind = _kind(settings.archive_url, "[archiveinterface] url", allow_file=True)
    if archive_kind == "http":
        # The published archive interface takes one request at a time unless a facility says
        # otherwise (archive_concurrency > 1): every process on the volume queues at the gate.
        gate = None
        if settings.archive_concurrency <= 1:
            gate = ArchiveGate(os.path.join(settings.volume_path, ".archive.lock"))
        # A HEAD after each PUT (auto: only when requests overlap) catches the archive that
        # answered 201 for bytes an overlapping request lost; with the gate, none of ours overlap.
        confirm = settings.confirm_puts if settings.confirm_puts is not None else gate is None
        archive: ArchivePort = HttpArchive(settings.archive_url, session, confirm=confirm, gate=gate)
    else:
        root = settings.data_path("archive") if archive_kind == "embedded" else urlparse(settings.archive_url).path
        archive = LocalArchive(root)
    return Peers(
        uniqueid=pick(settings.uniqueid_url, EmbeddedUniqueId,
                      lambda: HttpUniqueId(settings.uniqueid_url, session)),
        policy=pick(settings.policy_url, EmbeddedPolicy,
                    lambda: HttpPolicy(settings.policy_url, settings.auth_header, session)),
        archive=archive,
        metadata=pick(settings.metadata_url, EmbeddedMetadata,
                      lambda: HttpMetadata(settings.metadata_url, session)),
    )
