"""The published object API of the 0.4 service (its ``tarutils`` classes and ``tasks`` functions).

Code written against the published package calls these; the documented modules ``tarutils``
and ``tasks`` re-export them. They work on the runtime of this process (``bootstrap.runtime``).
The service itself runs ``stages`` and ``pipeline``, never these.
"""

from __future__ import annotations

import json
import logging
import tarfile
from typing import Any, BinaryIO, cast

from ..app.bootstrap import runtime
from ..bundles import document
from ..bundles.tar import METADATA_MEMBER, MemberReader, open_bundle, read_metadata
from ..common import states
from ..common.errors import BundleError, IngestError, IntegrityError, PeerError
from ..jobs import record

logger = logging.getLogger(__name__)


def open_tar(fpath: str) -> tarfile.TarFile | None:
    """Open a tar bundle; return None if it is not a readable tar (published behaviour)."""
    try:
        return open_bundle(fpath)
    except BundleError:
        return None


def get_clipped(fname: str) -> str:
    """Return a file path with the data separator removed."""
    return document.clip(fname)


def file_count(tar: tarfile.TarFile) -> int:
    """Retrieve the file count for a tar file, not counting metadata.txt."""
    return sum(1 for info in tar.getmembers()
               if info.isfile() and document.member_name(info.name) != METADATA_MEMBER)


class HashValidationException(IntegrityError):
    """Class to capture hashsum validation failures."""


class FileIngestor:
    """Ingest a single file from a tar file into the file archive (published interface)."""

    def __init__(self, hashtype: str, hashcode: str, file_id: int) -> None:
        """Constructor for FileIngestor class."""
        self.hashtype = hashtype
        self.recorded_hash = document.normalise_hashsum(hashtype, hashcode)
        self.file_id = file_id
        self.fileobj: MemberReader | None = None
        self.hashval: Any = None
        self.server = runtime().settings.archive_url

    def read(self, size: int) -> bytes:
        """Read wrapper for requests that calculates the hashcode inline."""
        assert self.fileobj is not None
        return self.fileobj.read(size)

    def upload_file_in_file(self, info: tarfile.TarInfo, tar: tarfile.TarFile) -> bool:
        """Upload a file from inside a tar file, then check its hash."""
        rt = runtime()
        self.fileobj = MemberReader(cast(BinaryIO, tar.fileobj), info.offset_data, info.size, self.hashtype,
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
        self.file_count = sum(1 for item in meta_list if item.get("destinationTable") == document.FILES_TABLE)
        return self.file_count

    def _load(self, raw: bytes | str, job_id: int, move: bool) -> None:
        parsed = document.parse_document(raw)
        entries = document.file_entries(parsed, move=move)
        self.transaction_id = int(job_id)
        self.file_obj_count(parsed)
        self.start_id = runtime().peers.uniqueid.reserve(len(entries), "file") if entries else 0
        self.meta = document.assign_ids(parsed, entries, self.start_id)
        self.files = {str(entry.file_id): self.meta[entry.index] for entry in entries}
        self.meta_str = bundle_json(document.for_peers(self.meta, self.transaction_id))

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
        return item["hashtype"], document.normalise_hashsum(item["hashtype"], item["hashsum"])

    def get_fname(self, file_id: str) -> str:
        """Get the file name from the file ID."""
        return self.files[str(file_id)]["name"]

    def get_subdir(self, file_id: str) -> str:
        """Get the sub directory element from the file ID."""
        return self.files[str(file_id)]["subdir"]

    def clean_metadata(self) -> None:
        """Remove the ``data/`` prefix from the subdirs in ``meta_str``."""
        self.meta_str = bundle_json(document.for_peers(self.meta or [], self.transaction_id or 0))

    def post_metadata(self) -> tuple[bool, str]:
        """Upload metadata to the metadata service; return (success, reason)."""
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
            path = "/".join(["data", document.clip(f"{item['subdir']}/{item['name']}")])
            info = self.tar.getmember(path)
            hashtype, hashsum = self.meta.get_hash(file_id)
            FileIngestor(hashtype, hashsum, int(file_id)).upload_file_in_file(info, self.tar)
        runtime().peers.archive.make_durable(int(file_id) for file_id in self.meta.files)


TarIngester = TarIngestor


def patch_files(meta_obj: MetaParser) -> None:
    """Ask the archive to move every file of a move document into place."""
    archive = runtime().peers.archive
    for file_id, item in meta_obj.files.items():
        archive.patch(int(file_id), item["source"])


def bundle_json(document: Any) -> str:
    """Serialise a document the way the published service did (sorted keys, indented)."""
    return json.dumps(document, sort_keys=True, indent=4)


# ---- the published module-level functions of ``tasks`` -------------------------------------

IngestException = IngestError


def ingest_check_tarfile(job_id: int, filepath: str):
    """Check the ingest tarfile and return it open; FAILED 'open tar' if it is not a tar."""
    with record.stage(job_id, states.OPEN_TAR):
        return open_bundle(filepath)


def ingest_metadata_parser(job_id: int, tar) -> MetaParser:
    """Parse a bundle's metadata and reserve its file ids, recording 'load metadata'."""
    meta = MetaParser()
    with record.stage(job_id, states.LOAD_METADATA):
        meta.load_meta(tar, job_id)
    return meta


def move_metadata_parser(job_id: int, metafile: str) -> MetaParser:
    """Parse a move document and reserve its file ids, recording 'load metadata'."""
    meta = MetaParser()
    with record.stage(job_id, states.LOAD_METADATA):
        meta.read_meta(metafile, job_id)
    return meta


def validate_meta(meta_str: str, authed_user: str) -> tuple[bool, str]:
    """Ask the policy whether ``authed_user`` may ingest ``meta_str``; return (allowed, reason)."""
    try:
        runtime().peers.policy.check_ingest(json.loads(meta_str), authed_user)
    except (PeerError, ValueError) as exc:
        return False, str(exc)
    return True, ""


def ingest_policy_check(job_id: int, meta_str: str, authed_user: str) -> None:
    """Check the metadata with the policy, recording 'Policy Validation'."""
    with record.stage(job_id, states.POLICY_VALIDATION):
        allowed, reason = validate_meta(meta_str, authed_user)
        if not allowed:
            raise IngestError(reason)


def ingest_files(job_id: int, ingest_obj: TarIngestor) -> None:
    """Send the files of a ``TarIngestor`` to the archive, recording 'ingest files'."""
    with record.stage(job_id, states.INGEST_FILES):
        ingest_obj.ingest()


def move_files(job_id: int, meta_obj: MetaParser) -> None:
    """Move the files of a move document in the archive, recording 'move files'."""
    with record.stage(job_id, states.MOVE_FILES):
        patch_files(meta_obj)


def ingest_metadata(job_id: int, meta: MetaParser) -> None:
    """Post the metadata to the metadata service, recording 'ingest metadata'."""
    with record.stage(job_id, states.INGEST_METADATA):
        posted, reason = meta.post_metadata()
        if not posted:
            raise IngestError(reason)
