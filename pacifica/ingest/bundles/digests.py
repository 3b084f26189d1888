"""Hash a tar's members while the upload streams past, so the worker need not read them again.

``StreamHasher`` follows the tar's 512-byte headers in the bytes as they arrive and records, for
each member's data, its offset in the stream, its size and its SHA-1. Whatever the parser makes
of an odd tar, every digest it records is the SHA-1 of exactly the bytes at that offset and size:
the worker uses a digest only for a member ``tarfile`` found at the same offset with the same
size, and hashes any other member itself.

The digests are kept beside the bundle (``<bundle>.sha1.json``) together with the bundle's
identity: its inode, size and modification time, and the boot id of the machine that received
it. A bundle that changed, or a machine that restarted since (the bundle's last blocks may not
have reached the disk), makes the digests unusable, and the worker hashes the bytes as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, cast

import ijson

logger = logging.getLogger(__name__)

BLOCK = 512
ALGORITHM = "sha1"
# Past this many members the digests would cost more memory than they save work.
MAX_MEMBERS = 200_000
# Header types that carry no data (hard and symbolic links, devices, directories, fifos).
_NO_DATA = frozenset(b"123456")
_PAX = frozenset(b"xX")
_PAX_MAX = 1 << 20


def _number(field: bytes) -> int:
    """A tar number field: octal text, or base-256 when the first byte has its top bit set."""
    if field[0] in (0o200, 0o377):
        value = 0
        for byte in field[1:]:
            value = (value << 8) | byte
        return value - (256 ** (len(field) - 1)) if field[0] == 0o377 else value
    text = field.split(b"\0", 1)[0].strip()
    return int(text or b"0", 8)


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    rest = header[:148] + header[156:]
    if stored == 256 + sum(rest):
        return True
    return stored == 256 + sum(rest) - 256 * sum(1 for byte in rest if byte > 127)  # signed bytes


def _pax_size(records: bytes) -> int | None:
    """The ``size`` a pax extended header sets for the next member, if any (the last one given,
    as ``tarfile`` reads it)."""
    size = None
    for line in records.split(b"\n"):
        _length, _, record = line.partition(b" ")
        key, sep, value = record.partition(b"=")
        if sep and key == b"size":
            size = int(value)
    return size


# What a tar we cannot follow raises while its headers are read (never what a sink raises).
_PARSE_ERRORS = (ValueError, IndexError, TypeError, OverflowError)
# Header types whose data is a regular file's bytes (tarfile's REGULAR_TYPES).
_REGULAR = frozenset(b"07") | {0}


class Sink(Protocol):
    """Where the bytes of a tar fed to a ``StreamHasher`` go (see ``volume.arrival``): each byte
    is handed over once, to ``bundle`` at its position in the stream, or, for the data of a
    regular-file member the sink chose to ``take``, to ``member``."""

    def bundle(self, data: memoryview, position: int) -> None:
        """Keep ``data``, which lies at ``position`` of the stream."""

    def take(self, offset: int, size: int) -> bool:
        """Whether the ``size`` bytes of data at ``offset`` (a regular file's) go to ``member``."""

    def member(self, data: memoryview) -> None:
        """The next bytes of the member taken."""

    def member_end(self) -> None:
        """The member taken is complete (or will get no more bytes)."""


class StreamHasher:
    """Feed a tar's bytes in order with ``update``; ``digests`` maps data offset → (size, sha1).

    With a ``sink``, every byte fed is handed on to it as well (see ``Sink``); errors of the
    sink (a full disk) are raised to the caller, whereas a tar that cannot be followed only
    ends the hashing (its bytes still reach the sink's ``bundle``).
    """

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink
        self._taking = False
        self.position = 0
        self.digests: dict[int, tuple[int, str]] = {}
        self.failed: str | None = None
        self._header = bytearray()
        self._remaining = 0
        self._padding = 0
        self._start = 0
        self._size = 0
        self._hasher: Any = None
        self._pax: bytearray | None = None
        self._next_size: int | None = None

    def update(self, data: bytes | memoryview) -> None:
        """Consume the next bytes of the stream."""
        view = memoryview(data)
        end = self.position + len(view)
        try:
            self._consume(view)
        except _PARSE_ERRORS as exc:  # a tar we cannot follow is hashed by the worker
            self._give_up(f"{exc.__class__.__name__}: {exc}")
        if self.position < end:  # what follows a tar this gave up on is kept as it is
            self._keep(view[len(view) - (end - self.position):])

    def _keep(self, view: memoryview) -> None:
        """Hand ``view``, the next bytes of the stream, to the sink's bundle."""
        if self.sink is not None:
            self.sink.bundle(view, self.position)
        self.position += len(view)

    def _consume(self, view: memoryview) -> None:
        while view and not self.failed:
            if self._remaining:
                taken = view[:self._remaining]
                self._hasher.update(taken)
                if self._pax is not None and len(self._pax) < _PAX_MAX:
                    self._pax += taken
                if self._taking:
                    cast(Sink, self.sink).member(taken)
                    self.position += len(taken)
                else:
                    self._keep(taken)
                self._remaining -= len(taken)
                if not self._remaining:
                    self._end_member()
            elif self._padding:
                taken = view[:self._padding]
                self._padding -= len(taken)
                self._keep(taken)
            else:
                taken = view[:BLOCK - len(self._header)]
                self._header += taken
                self._keep(taken)
                if len(self._header) == BLOCK:
                    header = bytes(self._header)
                    self._header.clear()
                    self._begin_member(header, self.position)
            view = view[len(taken):]

    def _give_up(self, reason: str) -> None:
        self.failed = reason
        self.digests.clear()
        self._stop_taking()

    def _stop_taking(self) -> None:
        if self._taking:
            self._taking = False
            cast(Sink, self.sink).member_end()

    def _begin_member(self, header: bytes, data_offset: int) -> None:
        if not any(header):
            return  # the end-of-archive blocks
        if not _checksum_ok(header):
            self._give_up(f"bad header checksum at offset {data_offset - BLOCK}")
            return
        kind = header[156]
        try:
            size = _number(header[124:136])
        except ValueError:
            self._give_up(f"bad size field at offset {data_offset - BLOCK}")
            return
        if self._next_size is not None:
            size, self._next_size = self._next_size, None
        if kind == ord("S") or kind == ord("g"):
            self._give_up("sparse members and global pax headers are not followed")
            return
        if kind in _NO_DATA or (kind == 0 and header[:100].split(b"\0", 1)[0].endswith(b"/")):
            return
        self._pax = bytearray() if kind in _PAX else None
        self._start, self._size = data_offset, size
        self._remaining = size
        self._padding = -size % BLOCK
        self._hasher = hashlib.new(ALGORITHM)
        self._taking = bool(size) and kind in _REGULAR and self.sink is not None and self.sink.take(data_offset, size)
        if not size:
            self._end_member()

    def _end_member(self) -> None:
        self._stop_taking()
        if self._pax is not None:
            try:
                self._next_size = _pax_size(bytes(self._pax))
            except ValueError:
                self._give_up("a pax header with an unreadable size")
                return
            self._pax = None
        elif self._size:
            if len(self.digests) >= MAX_MEMBERS:
                self._give_up(f"more than {MAX_MEMBERS} members")
                return
            self.digests[self._start] = (self._size, self._hasher.hexdigest())
        self._hasher = None


class Overlapped:
    """Run a ``StreamHasher`` in a thread of its own, one block behind the caller.

    ``update`` hands over a block and returns at once (after the previous block is done), so
    hashing one block overlaps receiving and writing the next; SHA-1 releases the GIL. The
    caller must not change a block until the next ``update`` or ``close`` returns: receiving
    into two buffers in turn does that.
    """

    def __init__(self, hasher: StreamHasher) -> None:
        self.hasher = hasher
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tarhash")
        self._pending: Future | None = None

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def update(self, block: memoryview) -> None:
        """Hash ``block`` in the background, once the previous block is hashed."""
        self._wait()
        self._pending = self._pool.submit(self.hasher.update, block)

    def close(self) -> None:
        """Wait for the last block, and stop the thread."""
        try:
            self._wait()
        finally:
            self._pool.shutdown()


def boot_id() -> str:
    """This boot of this machine (empty where the kernel does not say)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def digests_path(bundle_path: str) -> str:
    """Where the digests of the bundle at ``bundle_path`` are kept."""
    return f"{bundle_path}.{ALGORITHM}.json"


def _identity(stat: os.stat_result) -> dict[str, Any]:
    return {"boot_id": boot_id(), "inode": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def identity(bundle_fd: int) -> dict[str, Any]:
    """What must be unchanged for digests taken of the bundle open as ``bundle_fd`` to hold:
    this boot of this machine, and the file's inode, size and modification time."""
    return _identity(os.fstat(bundle_fd))


def save(hasher: StreamHasher, bundle_path: str, written: str) -> None:
    """Store the digests of the bundle written at ``written``, to be found beside ``bundle_path``
    (where it is renamed to next).

    Not flushed to disk: after a crash of the machine the boot id no longer matches, so a lost or
    torn file is never trusted.
    """
    if hasher.failed:
        logger.info("%s: members not hashed during the upload (%s)", bundle_path, hasher.failed)
        return
    save_members(hasher.digests, bundle_path, written)


def save_members(members: dict[int, tuple[int, str]], bundle_path: str, written: str) -> None:
    """Store ``members`` (data offset → size, SHA-1) as the digests of the bundle written at
    ``written``, to be found beside ``bundle_path`` (see ``save``)."""
    target = digests_path(bundle_path)
    if not boot_id():
        return
    document = {"algorithm": ALGORITHM, "bundle": _identity(os.stat(written)),
                "members": {str(offset): list(value) for offset, value in members.items()}}
    temp = f"{target}.tmp{os.getpid()}"
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
        os.replace(temp, target)
    except OSError as exc:  # the worker hashes the members itself, as without digests
        logger.warning("%s: could not keep the digests taken during the upload: %s", bundle_path, exc)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def recorded(bundle_path: str, bundle_fd: int) -> Iterator[tuple[int, int, str]]:
    """The (data offset, size, digest) of each member recorded for the bundle open as
    ``bundle_fd``, one at a time; none unless they still hold (see ``identity``)."""
    try:
        with open(digests_path(bundle_path), "rb") as handle:
            header = next(ijson.items(handle, "bundle"), None)
            handle.seek(0)
            if header != identity(bundle_fd) or next(ijson.items(handle, "algorithm"), None) != ALGORITHM:
                return
            handle.seek(0)
            for offset, (size, digest) in ijson.kvitems(handle, "members"):
                yield int(offset), int(size), str(digest)
    except (OSError, ValueError, TypeError, ijson.JSONError):
        return


def discard(bundle_path: str) -> None:
    """Remove the digests of a bundle."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(digests_path(bundle_path))
