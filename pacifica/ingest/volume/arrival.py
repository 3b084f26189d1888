"""Where the bytes of an arriving bundle are written: each byte once.

A bundle whose files go to an archive on the volume's own filesystem (the embedded archive, a
``file://`` archive) is split as it arrives. The data of each regular-file member of at least
``STAGE_MIN`` bytes is written to a file of its own, ``<bundle>.staged/<data offset>``; every
other byte (headers, small members, ``metadata.txt`` when small) is written to the bundle at its
place in the tar, which therefore has holes where the staged members were. 'ingest files' then
links each staged member into the archive (``AdoptingArchivePort.adopt``) instead of copying it,
so a large file costs one write, as it would cost anyone copying it off the network.

The bundle on the volume is thus a sparse index of the tar, not the tar itself: what reads a
member's bytes (``member_source``) looks for its staged file first. A staged file is used only for
the member at exactly its data offset and of exactly its size, and every byte archived is
checked against the hash in the metadata, so a tar the splitter read differently from
``tarfile`` fails its check rather than archiving the wrong bytes.

Small members are not staged: for them the work is creating the file, which staging would not
save, and it would add a link and an unlink for each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator
from typing import IO

from ..bundles.tar import member_file

logger = logging.getLogger(__name__)

# Regular-file members at least this large are staged.
STAGE_MIN = 1 << 20


def staged_dir(bundle_path: str) -> str:
    """Where the staged members of the bundle at ``bundle_path`` are kept."""
    return f"{bundle_path}.staged"


def staged_members(bundle_path: str) -> dict[int, str]:
    """The staged members of a bundle: data offset → path (empty when none were staged)."""
    directory = staged_dir(bundle_path)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {int(name): os.path.join(directory, name) for name in names if name.isdigit()}


@contextlib.contextmanager
def open_member(bundle_path: str, info: tarfile.TarInfo) -> Iterator[IO[bytes]]:
    """The bytes of the member ``info`` (found by ``tar.walk``) of the bundle at ``bundle_path``,
    as a seekable file: its staged copy if it has one of its size, else its range of the tar."""
    path = staged_members(bundle_path).get(info.offset_data)
    staged: IO[bytes] | None = None
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            staged = open(path, "rb")  # noqa: SIM115 - closed below
        if staged is not None and os.fstat(staged.fileno()).st_size != info.size:
            staged.close()
            staged = None
    if staged is not None:
        with staged:
            yield staged
        return
    with member_file(bundle_path, info) as handle:
        yield handle


def discard_staged(bundle_path: str) -> None:
    """Remove the staged members of a bundle."""
    shutil.rmtree(staged_dir(bundle_path), ignore_errors=True)


class BundleWriter:
    """The ``digests.Sink`` of an upload: writes the bundle to ``fd`` by position, and, with
    ``stage_into``, the data of large regular-file members to files of their own there."""

    def __init__(self, fd: int, stage_into: str | None = None, stage_min: int = STAGE_MIN) -> None:
        self.fd = fd
        self.stage_into = stage_into
        self.stage_min = stage_min
        self.staged = 0
        self._member: int | None = None

    def bundle(self, data: memoryview, position: int) -> None:
        """Write ``data`` at ``position`` of the bundle."""
        while data:
            written = os.pwrite(self.fd, data, position)
            data, position = data[written:], position + written

    def take(self, offset: int, size: int) -> bool:
        """Stage the member at ``offset`` if it is large enough and staging is on."""
        if self.stage_into is None or size < self.stage_min:
            return False
        if not self.staged:
            os.makedirs(self.stage_into, exist_ok=True)
        self._member = os.open(os.path.join(self.stage_into, str(offset)),
                               os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self.staged += 1
        return True

    def member(self, data: memoryview) -> None:
        """Write the next bytes of the staged member."""
        while data:
            data = data[os.write(self._member, data):]  # type: ignore[arg-type]

    def member_end(self) -> None:
        """Close the staged member."""
        if self._member is not None:
            os.close(self._member)
            self._member = None

    def finish(self, size: int) -> None:
        """The bundle is ``size`` bytes long (holes where its last members were staged)."""
        self.member_end()
        os.ftruncate(self.fd, size)

    def abandon(self) -> None:
        """Close what is open; the caller removes the files."""
        with contextlib.suppress(OSError):
            self.member_end()
