"""The published module-level API still works end to end (code written against 0.4.x calls it)."""

from __future__ import annotations

import json

import pytest

from pacifica.ingest import tarutils, tasks
from pacifica.ingest.app import bootstrap
from pacifica.ingest.compat.orm import DB, read_state
from pacifica.ingest.config import load_settings
from pacifica.ingest.db import migrations
from tests.support.bundles import make_bundle, move_document


@pytest.fixture
def embedded(tmp_path):
    previous = DB.obj
    runtime = bootstrap.configure(load_settings(environ={"INGEST_DATA_DIR": str(tmp_path / "data")}))
    DB.connect(reuse_if_open=True)
    migrations.upgrade(DB.obj)
    yield runtime
    DB.close()
    DB.initialize(previous)
    tasks.INGEST_APP.use(None)


def test_upload_through_the_published_functions(embedded, tmp_path):
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/p/one.txt": b"one\n", "data/p/two.txt": b"two\n"})
    tar = tasks.ingest_check_tarfile(7, str(path))
    meta = tasks.ingest_metadata_parser(7, tar)
    assert meta.file_count == 2 and len(meta.files) == 2
    tasks.ingest_policy_check(7, meta.meta_str, "alice")
    assert tasks.validate_meta(meta.meta_str, "alice") == (True, "")
    tasks.ingest_files(7, tarutils.TarIngestor(tar, meta))
    tasks.ingest_metadata(7, meta)
    row = read_state(7)
    assert (row.state, row.task, float(row.task_percent), row.complete) == ("OK", "ingest metadata", 100.0, True)
    for file_id, item in meta.files.items():
        with open(embedded.peers.archive.path(int(file_id)), "rb") as handle:
            assert handle.read() == f"{item['name'].split('.')[0]}\n".encode()
    stored = embedded.peers.metadata.get(7)
    assert {"destinationTable": "Transactions._id", "value": 7} in stored
    assert all(not item["subdir"].startswith("data") for item in stored if item["destinationTable"] == "Files")


def test_failures_record_the_published_stage_names(embedded, tmp_path):
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"nope" * 100)
    with pytest.raises(tasks.IngestException):
        tasks.ingest_check_tarfile(8, str(garbage))
    assert (read_state(8).state, read_state(8).task) == ("FAILED", "open tar")

    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/p/one.txt": b"one\n"}, corrupt_hash="data/p/one.txt")
    tar = tasks.ingest_check_tarfile(9, str(path))
    meta = tasks.ingest_metadata_parser(9, tar)
    with pytest.raises(tasks.IngestException):
        tasks.ingest_files(9, tarutils.TarIngestor(tar, meta))
    assert (read_state(9).state, read_state(9).task) == ("FAILED", "ingest files")
    assert not tasks.validate_meta(json.dumps([{"destinationTable": "Files"}]), "alice")[0]


def test_move_through_the_published_functions(embedded, tmp_path):
    source = tmp_path / "src.dat"
    source.write_bytes(b"moved")
    document = tmp_path / "move.json"
    document.write_text(json.dumps(move_document({"data/m/src.dat": str(source)})))
    meta = tasks.move_metadata_parser(10, str(document))
    tasks.move_files(10, meta)
    (file_id,) = meta.files
    with open(embedded.peers.archive.path(int(file_id)), "rb") as handle:
        assert handle.read() == b"moved"
    assert read_state(10).task == "move files" and not source.exists()
