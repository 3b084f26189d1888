"""The agent's bundle: a tar made on the fly whose bytes, length and every offset are the same each
time (a resumed upload sends the rest of the very same bundle), and that tar reads back as the
files and metadata it describes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile

import pytest

from pacifica.agent.bundle import BundleStream, SourceChanged, files_of, layout, metadata_document
from pacifica.agent.journal import READY, SENDING, Journal


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "watched"
    (root / "run-1" / "deeper").mkdir(parents=True)
    contents = {"run-1/a.dat": os.urandom(100_000), "run-1/deeper/b.txt": b"notes\n",
                "run-1/" + "long-name-" * 12 + ".bin": os.urandom(513), "run-1/empty": b""}
    for relative, data in contents.items():
        (root / relative).write_bytes(data)
    return root, contents


def _bundle(root, contents):
    files = files_of(str(root), [str(root / relative) for relative in contents])
    metadata = metadata_document(files, {"submitter": 10, "project": "1234a", "instrument": 54},
                                 [{"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "x"}])
    return files, metadata, layout(files, metadata, 1_700_000_000)


def test_the_stream_is_a_tar_of_the_files_and_their_metadata(run):
    root, contents = run
    _files, _metadata, pieces = _bundle(root, contents)
    stream = BundleStream(pieces)
    data = stream.read()
    assert len(data) == stream.length and len(data) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar.getmembers()}
    assert list(members)[-1] == "metadata.txt"
    assert {name: body for name, body in members.items() if name != "metadata.txt"} == \
        {f"data/{relative}": body for relative, body in contents.items()}
    document = json.loads(members["metadata.txt"])
    described = {f"data/{item['subdir']}/{item['name']}": item for item in document
                 if item["destinationTable"] == "Files"}
    assert {path: item["hashsum"] for path, item in described.items()} == \
        {f"data/{relative}": hashlib.sha1(body).hexdigest() for relative, body in contents.items()}
    assert {"destinationTable": "Transactions.project", "value": "1234a"} in document


def test_every_offset_gives_the_same_bytes_again(run):
    root, contents = run
    _files, _metadata, pieces = _bundle(root, contents)
    whole = BundleStream(pieces).read()
    again = BundleStream(layout(*_bundle(root, contents)[:2], 1_700_000_000))
    assert again.read() == whole, "the same files make the same bundle"
    randomly = random.Random(7)
    for _ in range(200):
        start = randomly.randrange(len(whole))
        count = randomly.randrange(1, 70_000)
        again.seek(start)
        assert again.read(count) == whole[start:start + count]


def test_a_file_that_shrank_stops_the_stream(run):
    root, contents = run
    _files, _metadata, pieces = _bundle(root, contents)
    (root / "run-1" / "a.dat").write_bytes(b"short")
    with pytest.raises(SourceChanged):
        BundleStream(pieces).read()


def test_the_journal_keeps_bundles_and_file_versions_across_restarts(run, tmp_path):
    root, contents = run
    files, metadata, pieces = _bundle(root, contents)
    path = str(tmp_path / "journal.sqlite3")
    journal = Journal(path)
    versions = [(entry.source, entry.size, 123) for entry in files]
    bundle = journal.add_bundle(str(root), "run-1", files, versions, metadata, 1_700_000_000,
                                pieces[-1].offset + pieces[-1].size)
    journal.update(bundle.id, url="http://x/uploads/5-abc", job_id=5, state=SENDING)
    journal.progress(bundle.id, 4096)
    journal.close()
    reopened = Journal(path)
    [kept] = reopened.bundles(READY, SENDING)
    assert (kept.files, kept.metadata, kept.url, kept.job_id, kept.sent_bytes) == (files, metadata,
                                                                                    "http://x/uploads/5-abc", 5, 4096)
    assert reopened.known(files[0].source, files[0].size, 123)
    assert not reopened.known(files[0].source, files[0].size, 124), "a changed file is a new version"
    assert reopened.counts() == {SENDING: 1}
