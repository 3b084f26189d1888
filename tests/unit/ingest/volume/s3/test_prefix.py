"""A prefix of objects made a bundle: a sparse tar whose members read back as the objects, the
digests taken on arrival kept, and nothing lost when it cannot be built."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from pacifica.ingest.bundles import digests, tar
from pacifica.ingest.bundles.document import file_entries
from pacifica.ingest.volume.arrival import open_member, staged_members
from pacifica.ingest.volume.s3.prefix import build_bundle, file_key, metadata_prefix, missing
from pacifica.ingest.volume.s3.store import Expected, ObjectStore
from tests.support.bundles import file_object, transaction_metadata


class Body:
    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    def readinto(self, buffer: memoryview) -> int:
        data = self.stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


FILES = {"a.txt": b"alpha" * 300, "deep/er/b.bin": os.urandom(70_000), "empty.dat": b"",
         "x" * 120 + "/long name.dat": b"a name tarfile's ustar header cannot hold"}


def _objects(tmp_path, files=FILES) -> tuple[ObjectStore, bytes, list]:
    store = ObjectStore(str(tmp_path / "volume"), 64 * 1024)
    document = transaction_metadata()
    for relative, data in files.items():
        subdir, _, name = f"data/{relative}".rpartition("/")
        document.append(file_object(subdir, name, data))
        store.put("ann", f"run/{relative}", Body(data), Expected({}))
    raw = json.dumps(document).encode()
    return store, raw, file_entries(document)


def test_the_sparse_bundle_reads_back_as_the_objects_and_keeps_their_digests(tmp_path):
    store, raw, entries = _objects(tmp_path)
    assert missing(store, "ann", "run/", entries) == []
    bundle = str(tmp_path / "volume" / "7.tar")
    records = build_bundle(store, bundle, raw, "ann", "run/", entries)
    assert [record.key for record in records] == [file_key("run/", entry) for entry in entries]
    members = {info.name: info for _tar, info in tar.walk(bundle)}
    assert set(members) == {"metadata.txt", *(f"data/{name}" for name in FILES)}
    with open_member(bundle, members["metadata.txt"]) as handle:
        assert handle.read() == raw
    for relative, data in FILES.items():
        with open_member(bundle, members[f"data/{relative}"]) as handle:
            assert handle.read(len(data) + 1) == data
    # The bytes were moved, not copied: the objects' files are gone, and the staged members are
    # exactly the non-empty files.
    assert all(store.data(record) is None for record in records)
    assert len(staged_members(bundle)) == len([data for data in FILES.values() if data])
    with open(bundle, "rb") as handle:
        recorded = {offset: digest for offset, _size, digest in digests.recorded(bundle, handle.fileno())}
    assert sorted(recorded.values()) == sorted(hashlib.sha1(data).hexdigest() for data in FILES.values() if data)
    # Sparse: the file takes far less room than its length.
    assert os.stat(bundle).st_blocks * 512 < os.path.getsize(bundle) / 2


def test_a_missing_object_leaves_every_other_where_it_was(tmp_path):
    store, raw, entries = _objects(tmp_path)
    gone = store.get("ann", "run/empty.dat")
    store.delete("ann", gone.key)
    assert missing(store, "ann", "run/", entries) == ["run/empty.dat"]
    bundle = str(tmp_path / "volume" / "8.tar")
    with pytest.raises(FileNotFoundError):
        build_bundle(store, bundle, raw, "ann", "run/", entries)
    assert not os.path.exists(bundle) and staged_members(bundle) == {}
    for relative, data in FILES.items():
        if relative != "empty.dat":
            with open(store.data(store.get("ann", f"run/{relative}")), "rb") as handle:
                assert handle.read() == data


@pytest.mark.parametrize("key, prefix", [("metadata.txt", ""), ("run42/metadata.txt", "run42/"),
                                         ("a/b/metadata.txt", "a/b/"), ("run42/metadata.txt.bak", None),
                                         ("run42/xmetadata.txt", None)])
def test_which_keys_are_a_prefix_metadata(key, prefix):
    assert metadata_prefix(key) == prefix
