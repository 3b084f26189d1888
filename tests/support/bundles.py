"""Build bundles (tar + metadata.txt) and move documents the way uploaders do."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from typing import Any


def transaction_metadata(project: str = "1234a", submitter: int = 10, instrument: int = 54) -> list[dict[str, Any]]:
    """Return the non-file metadata objects of a typical upload."""
    return [
        {"destinationTable": "Transactions.submitter", "value": submitter},
        {"destinationTable": "Transactions.project", "value": project},
        {"destinationTable": "Transactions.instrument", "value": instrument},
        {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "test"},
    ]


def file_object(subdir: str, name: str, data: bytes, hashtype: str = "sha1",
                mimetype: str = "text/plain", **extra: Any) -> dict[str, Any]:
    """Return the Files metadata object describing ``data`` stored as ``subdir/name``."""
    item = {
        "destinationTable": "Files",
        "name": name,
        "subdir": subdir,
        "size": len(data),
        "hashtype": hashtype,
        "hashsum": hashlib.new(hashtype, data).hexdigest(),
        "mimetype": mimetype,
        "ctime": "2020-01-01T00:00:00",
        "mtime": "2020-01-01T00:00:00",
    }
    item.update(extra)
    return item


def write_tar(path: str, members: list[tuple[str, bytes]], metadata: bytes | str | list | None,
              metadata_first: bool = False) -> None:
    """Write a tar holding ``members`` (name, bytes) and ``metadata.txt``."""
    if isinstance(metadata, list):
        metadata = json.dumps(metadata)
    if isinstance(metadata, str):
        metadata = metadata.encode()
    entries = list(members)
    if metadata is not None:
        entries = [("metadata.txt", metadata), *entries] if metadata_first else [*entries, ("metadata.txt", metadata)]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))


def make_bundle(path: str, files: dict[str, bytes], project: str = "1234a",
                corrupt_hash: str | None = None, mimetype: str = "text/plain") -> list[dict[str, Any]]:
    """Write a valid bundle of ``files`` ({'data/sub/dir/name': bytes}); return its metadata.

    ``corrupt_hash`` names a file whose declared hashsum is wrong; ``mimetype`` is given to every file.
    """
    metadata = transaction_metadata(project)
    members = []
    for arcname, data in files.items():
        subdir, _, name = arcname.rpartition("/")
        item = file_object(subdir, name, data, mimetype=mimetype)
        if arcname == corrupt_hash:
            item["hashsum"] = hashlib.sha1(b"not the bytes").hexdigest()
        metadata.append(item)
        members.append((arcname, data))
    write_tar(path, members, metadata)
    return metadata


def move_document(sources: dict[str, str], project: str = "1234a") -> list[dict[str, Any]]:
    """Return a move document for ``sources`` ({'data/sub/name': '/path/on/archive/fs'})."""
    document = transaction_metadata(project)
    for arcname, source in sources.items():
        with open(source, "rb") as handle:
            data = handle.read()
        subdir, _, name = arcname.rpartition("/")
        document.append(file_object(subdir, name, data, source=source))
    return document


def upload_job(url: str) -> int:
    """The job id of a single tus upload from its URL (``.../uploads/<job_id>-<secret>``)."""
    return int(url.rstrip("/").rsplit("/", 1)[1].split("-", 1)[0])


def bundle_start(member_size: int, name: str = "data/cut.bin") -> bytes:
    """The first block of a bundle whose first member holds ``member_size`` bytes: what the door of
    ``POST /upload`` reads before it lets a body in (the bytes after it are the caller's)."""
    header = tarfile.TarInfo(name)
    header.size = member_size
    return header.tobuf(tarfile.USTAR_FORMAT)
