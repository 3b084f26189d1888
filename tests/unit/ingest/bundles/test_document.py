"""Metadata documents and their agreement with the tar members."""

from __future__ import annotations

import json

import pytest

from pacifica.ingest.bundles import document
from pacifica.ingest.common.errors import MetadataError
from pacifica.ingest.tarutils import MemberReader, file_count, get_clipped, open_tar, read_metadata
from tests.support.bundles import file_object, transaction_metadata, write_tar


def test_parse_document_accepts_a_list_of_objects():
    assert document.parse_document(b'[{"a": 1}]') == [{"a": 1}]


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "not valid JSON"), (b'{"a": 1}', "JSON list"), (b"[1, 2]", "item 0 is not an object"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_parse_document_rejects(raw, message):
    with pytest.raises(MetadataError, match=message):
        document.parse_document(raw)


def test_file_entries_report_every_problem_at_once():
    metadata = transaction_metadata() + [
        {"destinationTable": "Files", "name": "a", "subdir": "data"},
        file_object("data", "b", b"x", hashtype="sha1") | {"hashtype": "crc99"},
        file_object("data", "c", b"x") | {"size": -1},
        file_object("data/../..", "d", b"x"),
        file_object("data", "e/f", b"x"),
    ]
    with pytest.raises(MetadataError) as caught:
        document.file_entries(metadata)
    message = str(caught.value)
    for expected in ("missing or non-string hashtype, hashsum", "crc99", "non-negative integer", "'..'",
                     "plain file name"):
        assert expected in message


def test_file_entries_normalise_hashsum_and_need_source_for_moves():
    item = file_object("data/x", "a.txt", b"abc", hashtype="sha1")
    item["hashsum"] = "SHA1:" + item["hashsum"].upper()
    entries = document.file_entries([item])
    assert entries[0].hashsum == file_object("data/x", "a.txt", b"abc")["hashsum"]
    with pytest.raises(MetadataError, match="source"):
        document.file_entries([item], move=True)


def test_assign_ids_and_for_peers():
    metadata = transaction_metadata() + [file_object("data/a/b", "x", b"1"), file_object("data", "y", b"2")]
    entries = document.file_entries(metadata)
    with_ids = document.assign_ids(metadata, entries, 100)
    assert [entry.file_id for entry in entries] == [100, 101]
    assert "_id" not in metadata[-1], "assign_ids changed its input"
    sent = document.for_peers(with_ids, 42)
    files = [item for item in sent if item["destinationTable"] == "Files"]
    assert [(item["_id"], item["subdir"]) for item in files] == [(100, "a/b"), (101, "")]
    assert sent[-1] == {"destinationTable": "Transactions._id", "value": 42}


@pytest.mark.parametrize("metadata_first", [True, False])
def test_metadata_may_come_first_or_last(tmp_path, metadata_first):
    path = tmp_path / "b.tar"
    metadata = [file_object("data", "a.txt", b"abc")]
    write_tar(str(path), [("data/a.txt", b"abc")], metadata, metadata_first=metadata_first)
    tar = open_tar(str(path))
    assert json.loads(read_metadata(tar)) == metadata
    assert file_count(tar) == 1


def test_open_tar_returns_none_for_garbage(tmp_path):
    path = tmp_path / "garbage"
    path.write_bytes(b"\x00garbage" * 1000)
    assert open_tar(str(path)) is None


def test_get_clipped():
    assert get_clipped("data/a//b/c.txt") == "a/b/c.txt"
    assert get_clipped("data") == ""
    assert get_clipped("other/data/x") == "other/data/x"


def test_member_reader_hashes_what_it_streams(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"head" + b"0123456789" * 1000 + b"tail")
    seen = []
    with open(path, "rb") as handle:
        reader = MemberReader(handle, 4, 10000, "sha256", 4096, progress=seen.append)
        blocks = list(reader)
    import hashlib

    assert b"".join(blocks) == b"0123456789" * 1000
    assert [len(block) for block in blocks] == [4096, 4096, 1808]
    assert reader.hexdigest() == hashlib.sha256(b"0123456789" * 1000).hexdigest()
    assert sum(seen) == 10000 and len(reader) == 10000
