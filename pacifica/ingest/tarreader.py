"""Reading bundles: opening the tar and streaming members from their offsets, hashing inline."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from . import bundle
from .errors import BundleError, IntegrityError, MetadataError

logger = logging.getLogger(__name__)

METADATA_MEMBER = "metadata.txt"


def open_bundle(path: str) -> tarfile.TarFile:
    """Open ``path`` as an uncompressed tar and read its member list; raise ``BundleError``."""
    try:
        tar = tarfile.open(path, "r:")  # noqa: SIM115 - returned open to the caller
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"Failed to open tarfile: {exc}") from None
    try:
        tar.getmembers()
    except (tarfile.TarError, OSError) as exc:
        tar.close()
        raise BundleError(f"Failed to read tarfile: {exc}") from None
    return tar


def read_metadata(tar: tarfile.TarFile, limit: int = 64 * 1024 * 1024) -> bytes:
    """Return the raw ``metadata.txt`` of a bundle; raise ``MetadataError`` if it is missing or
    larger than ``limit`` bytes (then it is not read at all)."""
    for info in tar.getmembers():
        if bundle.member_name(info.name) == METADATA_MEMBER and info.isfile():
            if info.size > limit:
                raise MetadataError(f"metadata.txt is {info.size} bytes, more than the {limit} byte limit "
                                    "([ingest] metadata_limit)")
            handle = tar.extractfile(info)
            assert handle is not None
            return handle.read()
    raise MetadataError("bundle has no metadata.txt")


class MemberReader:
    """Stream ``size`` bytes starting at ``offset`` of an open file, hashing them on the way.

    Iterating yields blocks of ``block_size``; ``len()`` is the byte count, so HTTP clients send
    a ``Content-Length`` and the blocks as they are. ``progress`` is called with each block's
    length. Reading past the end of a truncated file raises ``IntegrityError``. Reads are
    positional (``os.pread``) when the handle is a real file, so several readers may share one
    open bundle, each in its own thread. With ``hashtype`` None the bytes are not hashed.
    """

    def __init__(self, handle: BinaryIO, offset: int, size: int, hashtype: str | None, block_size: int,
                 progress: Callable[[int], None] | None = None) -> None:
        self.handle = handle
        self.offset = offset
        self.size = size
        self.block_size = block_size
        self.hasher = hashlib.new(hashtype) if hashtype else None
        self.progress = progress
        self.bytes_read = 0
        try:
            self._fd: int | None = handle.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None

    def __len__(self) -> int:
        return self.size

    def _read_at(self, position: int, size: int) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, size, position)
        self.handle.seek(position)
        return self.handle.read(size)

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining if negative)."""
        remaining = self.size - self.bytes_read
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size == 0:
            return b""
        block = self._read_at(self.offset + self.bytes_read, size)
        if not block:
            raise IntegrityError(f"bundle ended after {self.bytes_read} of {self.size} bytes of a member")
        self.bytes_read += len(block)
        if self.hasher is not None:
            self.hasher.update(block)
        if self.progress is not None:
            self.progress(len(block))
        return block

    def __iter__(self) -> Iterator[bytes]:
        while True:
            block = self.read(self.block_size)
            if not block:
                return
            yield block

    def drain(self) -> None:
        """Read (and hash) every remaining byte, keeping none of them."""
        for _block in self:
            pass

    def hexdigest(self) -> str:
        """Return the hash of the bytes read so far."""
        if self.hasher is None:
            raise ValueError("this reader was asked not to hash")
        return self.hasher.hexdigest()
