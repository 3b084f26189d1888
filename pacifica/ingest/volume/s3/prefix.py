"""A prefix of objects made a bundle, without the user ever making a tar.

``aws s3 sync run42/ s3://ingest/run42/`` and then a ``run42/metadata.txt`` object: the objects
the metadata lists (``run42/<subdir>/<name>`` for the file ``data/<subdir>/<name>``) become the
bundle's files. While some are missing, the prefix waits (``s3/prefixes/``); the last one to
arrive completes it.

The bundle is built as an upload's is on arrival (``volume.arrival``): a sparse tar of headers
and ``metadata.txt``, each file's bytes moved (renamed, never copied) to
``<bundle>.staged/<data offset>``, and the SHA-1 taken as each object arrived kept as the
bundle's digests, so that no byte is read again before it is archived.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import tarfile
import time
from collections.abc import Iterator

from ...bundles import digests
from ...bundles.document import FileEntry, clip
from ..arrival import discard_staged, staged_dir
from ..spool import remove, write_json_atomically
from .store import ObjectRecord, ObjectStore, read_json

METADATA_NAME = "metadata.txt"
_END = 2 * tarfile.BLOCKSIZE


def metadata_prefix(key: str) -> str | None:
    """The prefix whose files a ``metadata.txt`` key describes (``run42/``), None for another key."""
    if key == METADATA_NAME:
        return ""
    if key.endswith("/" + METADATA_NAME):
        return key[:-len(METADATA_NAME)]
    return None


def file_key(prefix: str, entry: FileEntry) -> str:
    """The key of the object that is ``entry``'s bytes: the prefix, then its path below ``data/``."""
    return prefix + clip(entry.path)


@dataclasses.dataclass
class Waiting:
    """A prefix whose ``metadata.txt`` arrived, and the job it became, waiting for its files."""

    job_id: int
    user: str
    prefix: str
    created: float


class Prefixes:
    """The prefixes waiting for files, under ``<volume>/s3/prefixes``."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.root = os.path.join(store.root, "prefixes")

    def path(self, user: str, prefix: str) -> str:
        """Where ``user``'s waiting ``prefix`` is recorded."""
        name = hashlib.sha256(f"{user}\0{prefix}".encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self.root, name + ".json")

    def wait(self, waiting: Waiting) -> None:
        """Record that ``waiting.prefix`` waits for its files."""
        write_json_atomically(self.path(waiting.user, waiting.prefix), dataclasses.asdict(waiting))

    def get(self, user: str, prefix: str) -> Waiting | None:
        """The job ``user``'s ``prefix`` waits as, if it does."""
        try:
            with open(self.path(user, prefix), encoding="utf-8") as handle:
                return Waiting(**json.load(handle))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def done(self, user: str, prefix: str) -> None:
        """The prefix waits no more (its bundle was built, or its job failed)."""
        remove(self.path(user, prefix))

    @contextlib.contextmanager
    def locked(self, user: str, prefix: str) -> Iterator[None]:
        """Hold ``user``'s ``prefix`` alone (two last files arriving at once build it once)."""
        os.makedirs(self.root, exist_ok=True)
        descriptor = os.open(self.path(user, prefix) + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def candidates(self, key: str) -> Iterator[str]:
        """The prefixes a new object ``key`` could complete: each of its parent folders."""
        parts = key.split("/")[:-1]
        yield ""
        for end in range(1, len(parts) + 1):
            yield "/".join(parts[:end]) + "/"

    def waiting(self) -> Iterator[Waiting]:
        """Every waiting prefix."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.root):
                if name.endswith(".json"):
                    found = read_json(os.path.join(self.root, name))
                    if isinstance(found, dict):
                        with contextlib.suppress(TypeError):
                            yield Waiting(**found)


def missing(store: ObjectStore, user: str, prefix: str, entries: list[FileEntry]) -> list[str]:
    """The keys of ``entries`` that have no waiting object yet."""
    absent = []
    for entry in entries:
        record = store.get(user, file_key(prefix, entry))
        if record is None or store.data(record) is None:
            absent.append(file_key(prefix, entry))
    return absent


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def build_bundle(store: ObjectStore, bundle_path: str, metadata: bytes, user: str, prefix: str,
                 entries: list[FileEntry]) -> list[ObjectRecord]:
    """Make the bundle at ``bundle_path`` of ``metadata`` and the objects ``entries`` name: a
    sparse tar, each object's bytes moved to the staged member at its data offset. Return the
    objects, now marked as the job's (the caller sets ``job_id``)."""
    partial = bundle_path + ".part"
    discard_staged(bundle_path)
    records = []
    members: dict[int, tuple[int, str]] = {}
    moved: list[tuple[str, str]] = []  # (staged path, where the object's bytes were)
    empty: list[str] = []  # empty objects: the tar header says all there is
    staged = staged_dir(bundle_path)
    os.makedirs(staged, exist_ok=True)
    try:
        with open(partial, "wb") as out:
            out.write(_header(METADATA_NAME, len(metadata), time.time()))
            out.write(metadata)
            position = out.tell() + _padded(len(metadata)) - len(metadata)
            for entry in entries:
                record = store.get(user, file_key(prefix, entry))
                source = store.data(record) if record is not None else None
                if record is None or source is None:
                    raise FileNotFoundError(f"the object {file_key(prefix, entry)} is gone")
                header = _header(entry.path, record.size, record.modified)
                out.seek(position)
                out.write(header)
                offset = position + len(header)
                if record.size:
                    os.rename(source, os.path.join(staged, str(offset)))
                    moved.append((os.path.join(staged, str(offset)), source))
                    members[offset] = (record.size, record.sha1)
                else:
                    empty.append(source)
                records.append(record)
                position = offset + _padded(record.size)
            out.truncate(position + _END)
            out.flush()
            os.fsync(out.fileno())
        digests.save_members(members, bundle_path, partial)
        os.replace(partial, bundle_path)
        for source in empty:
            remove(source)
    except BaseException:
        # The objects already moved go back where they were, so that nothing is lost.
        for path, source in moved:
            with contextlib.suppress(OSError):
                os.rename(path, source)
        remove(partial)
        digests.discard(bundle_path)
        discard_staged(bundle_path)
        raise
    return records
