"""Reading bundles: opening the tar, streaming members from their offsets, hashing inline.

The classes ``MetaParser``, ``TarIngestor`` and ``FileIngestor`` keep the published
object interface; the pipeline itself uses ``open_bundle`` and ``MemberReader`` directly.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

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


def open_tar(fpath: str) -> tarfile.TarFile | None:
    """Open a tar bundle; return None if it is not a readable tar (published behaviour)."""
    try:
        return open_bundle(fpath)
    except BundleError:
        return None


def read_metadata(tar: tarfile.TarFile) -> bytes:
    """Return the raw ``metadata.txt`` of a bundle; raise ``MetadataError`` if it is missing."""
    for info in tar.getmembers():
        if bundle.member_name(info.name) == METADATA_MEMBER and info.isfile():
            handle = tar.extractfile(info)
            assert handle is not None
            return handle.read()
    raise MetadataError("bundle has no metadata.txt")


def get_clipped(fname: str) -> str:
    """Return a file path with the data separator removed."""
    return bundle.clip(fname)


def file_count(tar: tarfile.TarFile) -> int:
    """Retrieve the file count for a tar file, not counting metadata.txt."""
    return sum(1 for info in tar.getmembers()
               if info.isfile() and bundle.member_name(info.name) != METADATA_MEMBER)


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


class HashValidationException(IntegrityError):
    """Class to capture hashsum validation failures."""


class FileIngestor:
    """Ingest a single file from a tar file into the file archive (published interface)."""

    def __init__(self, hashtype: str, hashcode: str, file_id: int) -> None:
        """Constructor for FileIngestor class."""
        from .bootstrap import runtime

        self.hashtype = hashtype
        self.recorded_hash = bundle.normalise_hashsum(hashtype, hashcode)
        self.file_id = file_id
        self.fileobj: MemberReader | None = None
        self.hashval = None
        self.server = runtime().settings.archive_url

    def read(self, size: int) -> bytes:
        """Read wrapper for requests that calculates the hashcode inline."""
        assert self.fileobj is not None
        return self.fileobj.read(size)

    def upload_file_in_file(self, info: tarfile.TarInfo, tar: tarfile.TarFile) -> bool:
        """Upload a file from inside a tar file, then check its hash."""
        from .bootstrap import runtime

        rt = runtime()
        self.fileobj = MemberReader(tar.fileobj, info.offset_data, info.size, self.hashtype,
                                    rt.settings.transfer_size)
        self.hashval = self.fileobj.hasher
        rt.peers.archive.put(self.file_id, self.fileobj, info.size, info.mtime)
        return self.validate_hash()

    def validate_hash(self) -> bool:
        """Validate that the calculated hash matches the hash uploaded in the tar file."""
        assert self.fileobj is not None
        if self.fileobj.hexdigest() != self.recorded_hash:
            raise HashValidationException(
                f"file {self.file_id}: {self.hashtype} is {self.fileobj.hexdigest()}, "
                f"metadata says {self.recorded_hash}")
        return True


FileIngester = FileIngestor


class MetaParser:
    """Hold a metadata document and its Files objects (published interface)."""

    def __init__(self) -> None:
        """Constructor."""
        self.meta: list[dict[str, Any]] | None = None
        self.meta_str = ""
        self.files: dict[str, dict[str, Any]] = {}
        self.start_id: int | None = None
        self.transaction_id: int | None = None
        self.file_count: int | None = None

    def file_obj_count(self, meta_list: list[dict[str, Any]]) -> int:
        """Count the file objects in metadata and keep the count."""
        self.file_count = sum(1 for item in meta_list if item.get("destinationTable") == bundle.FILES_TABLE)
        return self.file_count

    def _load(self, raw: bytes | str, job_id: int, move: bool) -> None:
        from .bootstrap import runtime

        document = bundle.parse_document(raw)
        entries = bundle.file_entries(document, move=move)
        self.transaction_id = int(job_id)
        self.file_obj_count(document)
        self.start_id = runtime().peers.uniqueid.reserve(len(entries), "file") if entries else 0
        self.meta = bundle.assign_ids(document, entries, self.start_id)
        self.files = {str(entry.file_id): self.meta[entry.index] for entry in entries}
        self.meta_str = bundle_json(bundle.for_peers(self.meta, self.transaction_id))

    def read_meta(self, metafile: str, job_id: int) -> None:
        """Read a move document from ``metafile``."""
        with open(metafile, "rb") as handle:
            self._load(handle.read(), job_id, move=True)

    def load_meta(self, tar: tarfile.TarFile, job_id: int) -> None:
        """Load the metadata from a tar file into searchable structures."""
        self._load(read_metadata(tar), job_id, move=False)

    def get_hash(self, file_id: str) -> tuple[str, str]:
        """Return the hash type and hash string of a file."""
        item = self.files[str(file_id)]
        return item["hashtype"], bundle.normalise_hashsum(item["hashtype"], item["hashsum"])

    def get_fname(self, file_id: str) -> str:
        """Get the file name from the file ID."""
        return self.files[str(file_id)]["name"]

    def get_subdir(self, file_id: str) -> str:
        """Get the sub directory element from the file ID."""
        return self.files[str(file_id)]["subdir"]

    def clean_metadata(self) -> None:
        """Remove the ``data/`` prefix from the subdirs in ``meta_str``."""
        self.meta_str = bundle_json(bundle.for_peers(self.meta or [], self.transaction_id or 0))

    def post_metadata(self) -> tuple[bool, str]:
        """Upload metadata to the metadata service; return (success, reason)."""
        from .bootstrap import runtime
        from .errors import PeerError

        try:
            runtime().peers.metadata.ingest(json.loads(self.meta_str))
        except PeerError as exc:
            return False, str(exc)
        return True, ""


class TarIngestor:
    """Send every file a ``MetaParser`` describes from a tar to the archive (published interface)."""

    def __init__(self, tar: tarfile.TarFile, meta: MetaParser) -> None:
        """Constructor for TarIngestor class."""
        self.tar = tar
        self.meta = meta

    def ingest(self) -> None:
        """Ingest a tar file into the file archive."""
        for file_id, item in self.meta.files.items():
            path = "/".join(["data", bundle.clip(f"{item['subdir']}/{item['name']}")])
            info = self.tar.getmember(path)
            hashtype, hashsum = self.meta.get_hash(file_id)
            FileIngestor(hashtype, hashsum, int(file_id)).upload_file_in_file(info, self.tar)
        from .bootstrap import runtime

        runtime().peers.archive.make_durable(int(file_id) for file_id in self.meta.files)


TarIngester = TarIngestor


def patch_files(meta_obj: MetaParser) -> None:
    """Ask the archive to move every file of a move document into place."""
    from .bootstrap import runtime

    archive = runtime().peers.archive
    for file_id, item in meta_obj.files.items():
        archive.patch(int(file_id), item["source"])


def bundle_json(document: Any) -> str:
    """Serialise a document the way the published service did (sorted keys, indented)."""
    return json.dumps(document, sort_keys=True, indent=4)
