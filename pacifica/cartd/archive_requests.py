"""The published ``archive_requests`` module of cartd: the archive interface as carts use it.

The client lives in ``peers.archive``; this face keeps every documented name importable from
here.
"""

from __future__ import annotations

from .peers.archive import HEADER_FIELDS, PEER, ArchiveRequests, LocalArchiveRequests, archive_for, receive

__all__ = ["HEADER_FIELDS", "PEER", "ArchiveRequests", "LocalArchiveRequests", "archive_for", "receive"]
