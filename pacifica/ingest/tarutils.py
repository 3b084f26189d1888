"""The published ``tarutils`` module: bundle readers and the 0.4 object interface.

The readers live in ``tarreader`` and the classes in ``published``; this face keeps every
documented name importable from here.
"""

from __future__ import annotations

from .bundles.tar import METADATA_MEMBER, MemberReader, open_bundle, read_metadata
from .compat.published import (
    FileIngester,
    FileIngestor,
    HashValidationException,
    MetaParser,
    TarIngester,
    TarIngestor,
    bundle_json,
    file_count,
    get_clipped,
    open_tar,
    patch_files,
)

__all__ = ["METADATA_MEMBER", "FileIngester", "FileIngestor", "HashValidationException", "MemberReader",
           "MetaParser", "TarIngester", "TarIngestor", "bundle_json", "file_count", "get_clipped", "open_bundle",
           "open_tar", "patch_files", "read_metadata"]
