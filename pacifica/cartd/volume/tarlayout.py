"""A cart's tar, laid out before a byte of it is sent.

Every member header is computed up front from the staged files' names, sizes and times, so the
whole tar has a known length (``Content-Length``), the same bytes on every request (an ``ETag``),
and any byte range can be produced without producing what comes before it (HTTP ``Range``: an
interrupted download resumes). File contents are read from the cart's staged files as they are
sent; nothing but the headers is held in memory and nothing is written to disk.

The tar also carries ``manifest-<hashtype>.txt`` members: ``<hex digest>  <path>`` lines in the
format ``sha1sum -c`` and friends check, one manifest per hash type used in the cart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import tarfile
from collections.abc import Iterable, Iterator

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


@dataclasses.dataclass(frozen=True)
class CartEntry:
    """One staged file of a cart: where it sits in the tar, where it is on disk, and its digest."""

    path: str
    source: str
    hash_type: str
    hash_value: str


@dataclasses.dataclass(frozen=True)
class _Segment:
    offset: int
    length: int
    data: bytes = b""
    source: str = ""


def _padding(size: int, unit: int = BLOCK) -> bytes:
    return b"\0" * (-size % unit)


def _header(name: str, size: int, mtime: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def manifests(entries: Iterable[CartEntry], taken: set[str]) -> dict[str, bytes]:
    """The manifest members' names and contents, one per hash type; a name a cart file already
    uses is prefixed with ``_`` until it is free."""
    lines: dict[str, list[str]] = {}
    for entry in entries:
        if entry.hash_value:
            lines.setdefault(entry.hash_type.lower(), []).append(f"{entry.hash_value.lower()}  {entry.path}\n")
    result = {}
    for hash_type, rows in sorted(lines.items()):
        name = f"manifest-{hash_type}.txt"
        while name in taken:
            name = "_" + name
        result[name] = "".join(rows).encode("utf-8")
    return result


class TarLayout:
    """The byte layout of a tar named ``name`` holding ``entries`` (read from disk now)."""

    def __init__(self, name: str, entries: Iterable[CartEntry]) -> None:
        self.name = name
        entries = sorted(entries, key=lambda entry: entry.path)
        stats = {entry.path: os.stat(entry.source) for entry in entries}
        mtime = int(max((stat.st_mtime for stat in stats.values()), default=0))
        self._segments: list[_Segment] = []
        self.size = 0
        directories = {""}
        for entry in entries:
            parent = posixpath.dirname(entry.path)
            while parent not in directories:
                directories.add(parent)
                parent = posixpath.dirname(parent)
        for directory in sorted(directories):
            self._bytes(_header(posixpath.join(name, directory).rstrip("/"), 0, mtime, tarfile.DIRTYPE))
        for entry in entries:
            stat = stats[entry.path]
            self._bytes(_header(posixpath.join(name, entry.path), stat.st_size, int(stat.st_mtime), tarfile.REGTYPE))
            self._file(entry.source, stat.st_size)
        for member, content in manifests(entries, set(stats)).items():
            self._bytes(_header(posixpath.join(name, member), len(content), mtime, tarfile.REGTYPE))
            self._bytes(content + _padding(len(content)))
        self._bytes(b"\0" * (2 * BLOCK))
        self._bytes(_padding(self.size, RECORD))
        identity = hashlib.sha1(name.encode("utf-8", "surrogateescape"))
        for entry in entries:
            stat = stats[entry.path]
            identity.update(f"\0{entry.path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}".encode(
                "utf-8", "surrogateescape"))
        self.etag = f'"{identity.hexdigest()}"'

    def _bytes(self, data: bytes) -> None:
        if data:
            self._segments.append(_Segment(self.size, len(data), data=data))
            self.size += len(data)

    def _file(self, source: str, size: int) -> None:
        if size:
            self._segments.append(_Segment(self.size, size, source=source))
            self.size += size
        self._bytes(_padding(size))

    def read(self, start: int = 0, stop: int | None = None, block_size: int = 1 << 20) -> Iterator[bytes]:
        """The tar's bytes from ``start`` up to (not including) ``stop``, in blocks."""
        stop = self.size if stop is None else min(stop, self.size)
        for segment in self._segments:
            end = segment.offset + segment.length
            if end <= start or segment.offset >= stop:
                continue
            first, last = max(start, segment.offset) - segment.offset, min(stop, end) - segment.offset
            if segment.source:
                yield from _file_blocks(segment.source, first, last - first, block_size)
            else:
                yield segment.data[first:last]

    def write(self, target: str, block_size: int = 1 << 20) -> None:
        """Write the whole tar to ``target`` (through a temporary name: it appears only whole)."""
        temp = target + ".part"
        with open(temp, "wb") as out:
            out.writelines(self.read(block_size=block_size))
        os.replace(temp, target)


def _file_blocks(source: str, offset: int, length: int, block_size: int) -> Iterator[bytes]:
    with open(source, "rb") as handle:
        handle.seek(offset)
        while length > 0:
            block = handle.read(min(block_size, length))
            if not block:
                raise OSError(f"{source} became shorter while it was being sent")
            length -= len(block)
            yield block
