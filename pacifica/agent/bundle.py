"""A bundle as a tar built on the fly, never a copy of the data: the same bytes every time.

A bundle is its files (where each is, its name under ``data/``, size, mtime, SHA-1) and its
``metadata.txt``. Its layout (every header, every file's bytes, the padding, the end) is fixed by
those alone, so its length is known before the first byte is sent (tus needs ``Upload-Length``)
and any offset of it can be produced again after a restart: ``BundleStream`` is a seekable,
read-only file over the layout that reads the data files only where the offset falls.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from typing import Any

BLOCK = tarfile.BLOCKSIZE
END = b"\0" * (2 * BLOCK)
METADATA_MEMBER = "metadata.txt"


@dataclasses.dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: where it is on this machine, and what it is in the bundle."""

    source: str
    arcname: str  # "data/<subdir>/<name>"
    size: int
    mtime: int
    sha1: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def digest(path: str, block: int = 1 << 20) -> tuple[int, str]:
    """The size and SHA-1 of the file at ``path``, read once."""
    sha1 = hashlib.sha1()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            sha1.update(chunk)
            size += len(chunk)
    return size, sha1.hexdigest()


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # PAX carries long and non-ASCII names exactly; the bytes depend on the fields alone.
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def metadata_document(files: Sequence[BundleFile], transaction: dict[str, Any],
                      extra: Sequence[dict[str, Any]] = ()) -> bytes:
    """The ``metadata.txt`` of ``files``: the transaction's values (submitter, project,
    instrument and any other ``Transactions.<key>``), ``extra`` objects (key-value pairs), and one
    Files object per file with its SHA-1."""
    items: list[dict[str, Any]] = [{"destinationTable": f"Transactions.{key}", "value": value}
                                   for key, value in transaction.items() if value is not None]
    items.extend(extra)
    for entry in files:
        subdir, _, name = entry.arcname.removeprefix("data/").rpartition("/")
        items.append({"destinationTable": "Files", "name": name, "subdir": subdir, "size": entry.size,
                      "hashtype": "sha1", "hashsum": entry.sha1, "mimetype": "application/octet-stream",
                      "ctime": _iso(entry.mtime), "mtime": _iso(entry.mtime)})
    return json.dumps(items, sort_keys=True, separators=(",", ":")).encode()


def _iso(mtime: int) -> str:
    return datetime.datetime.fromtimestamp(mtime, datetime.UTC).replace(tzinfo=None).isoformat()


@dataclasses.dataclass(frozen=True)
class Piece:
    """A run of the bundle: ``data`` bytes, or ``size`` bytes of the file ``source``."""

    offset: int
    size: int
    data: bytes = b""
    source: str | None = None


def layout(files: Sequence[BundleFile], metadata: bytes, mtime: int) -> list[Piece]:
    """The bundle's runs in order: each file's header, bytes and padding, then ``metadata.txt``
    (last, as the published uploader writes it), then the end of the archive."""
    pieces: list[Piece] = []
    offset = 0

    def add(piece_data: bytes = b"", size: int = 0, source: str | None = None) -> None:
        nonlocal offset
        length = len(piece_data) if source is None else size
        if length:
            pieces.append(Piece(offset, length, piece_data, source))
            offset += length

    for entry in files:
        add(_header(entry.arcname, entry.size, entry.mtime))
        add(size=entry.size, source=entry.source)
        add(b"\0" * (-entry.size % BLOCK))
    add(_header(METADATA_MEMBER, len(metadata), mtime))
    add(metadata)
    add(b"\0" * (-len(metadata) % BLOCK))
    add(END)
    return pieces


class SourceChanged(OSError):
    """A file of the bundle is no longer what it was when the bundle was made."""


class SeekableReader(io.RawIOBase):
    """A read-only file of ``length`` bytes that reads from wherever it is moved to."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, min(self.length, base + offset))
        return self.position


class BundleStream(SeekableReader):
    """The bundle of ``pieces`` as a seekable, read-only file; the files are opened as reading
    reaches them. A file that has shrunk raises ``SourceChanged`` (the bundle cannot be what
    its metadata says)."""

    def __init__(self, pieces: Sequence[Piece]) -> None:
        self.pieces = list(pieces)
        super().__init__(self.pieces[-1].offset + self.pieces[-1].size if self.pieces else 0)
        self._open: tuple[str, Any] | None = None

    def _piece_at(self, position: int) -> Piece | None:
        low, high = 0, len(self.pieces) - 1
        while low <= high:
            middle = (low + high) // 2
            piece = self.pieces[middle]
            if position < piece.offset:
                high = middle - 1
            elif position >= piece.offset + piece.size:
                low = middle + 1
            else:
                return piece
        return None

    def _file(self, source: str):
        if self._open is None or self._open[0] != source:
            self._close_file()
            self._open = (source, open(source, "rb"))  # noqa: SIM115 - closed when reading moves on
        return self._open[1]

    def _close_file(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        piece = self._piece_at(self.position)
        if piece is None or not len(view):
            return 0
        within = self.position - piece.offset
        count = min(len(view), piece.size - within)
        if piece.source is None:
            view[:count] = piece.data[within:within + count]
        else:
            handle = self._file(piece.source)
            handle.seek(within)
            got = handle.readinto(view[:count])
            if got != count:
                raise SourceChanged(f"{piece.source} has fewer bytes than when its bundle was made")
        self.position += count
        return count

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left with -1), as many as there are: a tus client
        sends what one read returns as a whole chunk."""
        if size is None or size < 0:
            size = self.length - self.position
        out = bytearray(max(0, min(size, self.length - self.position)))
        filled = 0
        while filled < len(out):
            got = self.readinto(memoryview(out)[filled:])
            if not got:
                break
            filled += got
        return bytes(out[:filled])

    def close(self) -> None:
        self._close_file()
        super().close()


def files_of(root: str, paths: Sequence[str]) -> list[BundleFile]:
    """The files at ``paths`` (under ``root``) as bundle files named ``data/<path from root>``,
    each read once for its SHA-1, in name order."""
    files = []
    for path in sorted(paths):
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        stat = os.stat(path)
        size, sha1 = digest(path)
        if size != stat.st_size:
            raise SourceChanged(f"{path} changed while it was read")
        files.append(BundleFile(path, f"data/{relative}", size, int(stat.st_mtime), sha1))
    return files
