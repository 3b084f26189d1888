"""'load metadata' into a job's manifest: the rules that match Files objects against tar members,
file ids kept across attempts and versions, and a bundle of any size read without being held."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tracemalloc

import pytest

from pacifica.ingest.common.errors import MetadataError
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.memory import MemoryUniqueId
from pacifica.ingest.volume.manifest import open_manifest
from pacifica.ingest.volume.spool import Spool
from tests.support.bundles import file_object, transaction_metadata, write_tar


def _tar(path, entries, metadata, kinds=None):
    """A tar of (name, bytes) entries, special members ({name: type}) and metadata.txt."""
    with tarfile.open(path, "w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind in (kinds or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "data/a.txt" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(info)
        raw = json.dumps(metadata).encode()
        info = tarfile.TarInfo("metadata.txt")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    return str(path)


def _load(tmp_path, path, uniqueid=None, job_id=1):
    spool = Spool(str(tmp_path / "volume"), 4096)
    return pipeline.load_bundle_metadata(job_id, path, spool, uniqueid or MemoryUniqueId(100))


def test_entries_get_their_members_offsets_and_ids(tmp_path):
    document = [file_object("data//a/b", "x.txt", b"12345"), file_object("data", "y.txt", b"")]
    path = _tar(tmp_path / "b.tar", [("data//a/b/x.txt", b"12345"), ("data/y.txt", b"")], document)
    with _load(tmp_path, path) as manifest:
        first, second = manifest.files()
        assert [first.path, second.path] == ["data/a/b/x.txt", "data/y.txt"]
        assert (first.member, first.size, first.file_id, second.file_id) == ("data//a/b/x.txt", 5, 100, 101)
        with open(path, "rb") as handle:
            handle.seek(first.offset)
            assert handle.read(5) == b"12345"
        assert (manifest.count(), manifest.total_bytes(), manifest.file_ids()) == (2, 5, [100, 101])


@pytest.mark.parametrize(("tar_entries", "kinds", "message"), [
    ([("data/a.txt", b"abc"), ("data/extra.txt", b"?")], None, "data/extra.txt: in the bundle but not described"),
    ([], None, "described in metadata but not a file"),
    ([("data/a.txt", b"abcd")], None, "metadata says 3 bytes, the bundle holds 4"),
    ([("data/a.txt", b"abc"), ("data/a.txt", b"abc")], None, "appears more than once"),
    ([("data/a.txt", b"abc"), ("./data/a.txt", b"abc")], None, "appears more than once"),
    ([("data/a.txt", b"abc"), ("../evil", b"x")], None, "absolute or '..'"),
    ([("data/a.txt", b"abc"), ("/etc/evil", b"x")], None, "absolute or '..'"),
    ([("data/a.txt", b"abc")], {"data/link": tarfile.SYMTYPE}, "link, device or FIFO"),
    ([("data/a.txt", b"abc")], {"data/hard": tarfile.LNKTYPE}, "link, device or FIFO"),
    ([("data/a.txt", b"abc")], {"data/fifo": tarfile.FIFOTYPE}, "link, device or FIFO"),
    ([("data/a.txt", b"abc")], {"data/dev": tarfile.CHRTYPE}, "link, device or FIFO"),
    ([], {"data/a.txt": tarfile.DIRTYPE}, "described in metadata but not a file"),
    ([("DATA/a.txt", b"abc")], None, "described in metadata but not a file"),
    ([("a.txt", b"abc")], None, r"the bundle holds files outside data/ \('a.txt'\): a bundle is metadata.txt "
                                r"beside a data/ folder.*data/a.txt: described in metadata but not a file"),
])
def test_a_bundle_that_disagrees_with_its_metadata_is_refused(tmp_path, tar_entries, kinds, message):
    path = _tar(tmp_path / "b.tar", tar_entries, [file_object("data", "a.txt", b"abc")], kinds)
    uniqueid = MemoryUniqueId(100)
    with pytest.raises(MetadataError, match=message):
        _load(tmp_path, path, uniqueid)
    assert uniqueid.asked == [], "ids were reserved for a refused bundle"
    assert os.listdir(tmp_path / "volume") == [], "a refused bundle left a manifest"


def test_two_files_objects_for_one_member_are_refused(tmp_path):
    document = [file_object("data", "a.txt", b"abc"), file_object("data/", "a.txt", b"abc")]
    path = _tar(tmp_path / "b.tar", [("data/a.txt", b"abc")], document)
    with pytest.raises(MetadataError, match=r"data/a\.txt: described by more than one Files object"):
        _load(tmp_path, path)


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "not valid JSON"), (b'{"a": 1}', "JSON list"), (b"[1, 2]", "item 0 is not an object"),
    (b"\xff\xfe", "not valid JSON"), (b"[" * 100 + b"]" * 100, "nests deeper"), (b"", "not valid JSON"),
    (b'[{"destinationTable": "Files", "name": "a"}]', "missing or non-string"),
])
def test_a_metadata_txt_that_is_not_a_document_is_refused(tmp_path, raw, message):
    path = str(tmp_path / "b.tar")
    write_tar(path, [], raw)
    with pytest.raises(MetadataError, match=message):
        _load(tmp_path, path)


def test_the_peers_get_the_document_with_ids_clipped_subdirs_and_the_transaction(tmp_path):
    document = transaction_metadata() + [file_object("data/a/b", "x", b"1"), file_object("data", "y", b"2")]
    path = _tar(tmp_path / "b.tar", [("data/a/b/x", b"1"), ("data/y", b"2")], document)
    with _load(tmp_path, path, job_id=42) as manifest:
        sent = list(manifest.peer_items(42))
    assert sent[:4] == transaction_metadata()
    assert [(item["_id"], item["subdir"], item["name"]) for item in sent[4:6]] == [(100, "a/b", "x"), (101, "", "y")]
    assert sent[-1] == {"destinationTable": "Transactions._id", "value": 42} and len(sent) == 7


def test_a_second_attempt_keeps_the_file_ids_of_the_first(tmp_path):
    path = _tar(tmp_path / "b.tar", [("data/a.txt", b"abc")], [file_object("data", "a.txt", b"abc")])
    uniqueid = MemoryUniqueId(100)
    _load(tmp_path, path, uniqueid).close()
    with _load(tmp_path, path, uniqueid) as again:
        assert [entry.file_id for entry in again.files()] == [100]
    assert uniqueid.asked == [(1, "file")]


def test_a_job_an_earlier_version_loaded_goes_on_with_its_file_ids(tmp_path):
    """An earlier version kept 'load metadata' in ``<job>.meta.json``: its ids and document stand."""
    path = _tar(tmp_path / "b.tar", [("data/a.txt", b"abc")], [file_object("data", "a.txt", b"abc")])
    spool = Spool(str(tmp_path / "volume"), 4096)
    with _load(tmp_path, path) as manifest:
        (entry,) = manifest.files()
        bundle_identity = manifest.about["bundle"]
    os.unlink(spool.manifest_path(1))
    peers_document = [dict(file_object("data", "a.txt", b"abc"), subdir="", _id=7),
                      {"destinationTable": "Transactions._id", "value": 1}]
    # An entry as the earlier version wrote it (FileEntry.as_dict()).
    legacy_entry = {"index": 0, "name": "a.txt", "subdir": "data", "size": 3, "hashtype": "sha1",
                    "hashsum": entry.hashsum, "source": None, "member": entry.member, "offset": entry.offset,
                    "mtime": entry.mtime}
    with open(spool.sidecar_path(1), "w", encoding="utf-8") as handle:
        json.dump({"job_id": 1, "bundle": bundle_identity, "metadata": peers_document,
                   "files": [dict(legacy_entry, file_id=7)]}, handle)
    uniqueid = MemoryUniqueId(100)
    with _load(tmp_path, path, uniqueid) as converted:
        (again,) = converted.files()
        assert (again.file_id, again.offset, again.size) == (7, entry.offset, 3)
        assert list(converted.peer_items(1)) == peers_document
    assert uniqueid.asked == []


def test_a_torn_manifest_is_loaded_again(tmp_path):
    path = _tar(tmp_path / "b.tar", [("data/a.txt", b"abc")], [file_object("data", "a.txt", b"abc")])
    spool = Spool(str(tmp_path / "volume"), 4096)
    os.makedirs(spool.volume_path)
    with open(spool.manifest_path(1), "wb") as handle:
        handle.write(b"SQLite format 3\0" + b"\0" * 100)
    assert open_manifest(spool.manifest_path(1)) is None
    with _load(tmp_path, path) as manifest:
        assert manifest.count() == 1


def test_a_bundle_of_many_members_is_matched_without_holding_them(tmp_path):
    """20,000 members, each described: what Python holds stays small (the member list and the
    document as objects cost 40 MB; the peak does not grow with the count)."""
    path = str(tmp_path / "many.tar")
    document = transaction_metadata()
    with tarfile.open(path, "w") as tar:
        for number in range(20_000):
            tar.addfile(tarfile.TarInfo(f"data/d{number % 100}/m{number}"))
            document.append({"destinationTable": "Files", "name": f"m{number}", "subdir": f"data/d{number % 100}",
                             "size": 0, "hashtype": "sha1", "hashsum": "da39a3ee5e6b4b0d3255bfef95601890afd80709"})
        raw = json.dumps(document).encode()
        info = tarfile.TarInfo("metadata.txt")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    del document, raw
    tracemalloc.start()
    try:
        with _load(tmp_path, path) as manifest:
            assert sum(1 for _entry in manifest.files()) == 20_000
            assert sum(1 for _item in manifest.peer_items(1)) == 20_005
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"'load metadata' held {peak / 2**20:.0f} MiB"
