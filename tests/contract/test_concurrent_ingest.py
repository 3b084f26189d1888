"""'ingest files' sending several files at once, to the published archive interface and to the
embedded archive: every byte arrives, and the first failure stops the rest and undoes the writes."""

from __future__ import annotations

import os

import pytest
import requests

from pacifica.core.http import make_session
from pacifica.ingest.common.errors import IngestError
from pacifica.ingest.db import migrations
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.archive import HttpArchive
from pacifica.ingest.peers.local_archive import LocalArchive
from pacifica.ingest.peers.uniqueid import EmbeddedUniqueId
from pacifica.ingest.volume.spool import Spool
from tests.conftest import bound_database
from tests.support.archive import archive_listing
from tests.support.bundles import file_object, transaction_metadata, write_tar

SMALL, LARGE = 3000, (1 << 20) + 4097  # LARGE goes through the embedded archive's kernel copy


def _bundle(path, sizes, corrupt=None):
    """Write a bundle of files of ``sizes``; the metadata of file number ``corrupt`` has a wrong hash."""
    metadata, members, contents = transaction_metadata(), [], {}
    for number, size in enumerate(sizes):
        data = os.urandom(size)
        item = file_object("d", f"f{number}.bin", data)
        if number == corrupt:
            item["hashsum"] = "0" * 40
        metadata.append(item)
        members.append((f"data/d/f{number}.bin", data))
        contents[f"f{number}.bin"] = data
    write_tar(str(path), members, metadata)
    return contents


@pytest.fixture(params=["local", "http"])
def target(request, tmp_path, archive):
    """(archive port, read(file_id) -> bytes or None)."""
    if request.param == "local":
        local = LocalArchive(str(tmp_path / "archive"))

        def read_local(file_id):
            path = local.path(file_id)
            return open(path, "rb").read() if os.path.exists(path) else None

        return local, read_local
    session = make_session(30, 2)

    def read_http(file_id):
        response = requests.get(f"{archive.url}/{file_id}", timeout=30)
        return response.content if response.status_code == 200 else None

    return HttpArchive(archive.url, session), read_http


def _manifest(tmp_path, path, request):
    """Load the bundle's metadata; file ids start at a place of this test's own in the shared archive."""
    uniqueid = EmbeddedUniqueId()
    uniqueid.reserve(8_000_000 + (abs(hash(request.node.nodeid)) % 10_000) * 100, "file")
    spool = Spool(str(tmp_path / "volume"), 1 << 20)
    return pipeline.load_bundle_metadata(1, str(path), spool, uniqueid)


def test_concurrent_sends_store_every_byte(tmp_path, target, request):
    port, read = target
    path = tmp_path / "bundle.tar"
    contents = _bundle(path, [SMALL] * 9 + [LARGE, 0, LARGE])
    with bound_database("sqlite", tmp_path) as database:
        migrations.upgrade(database)
        reports = []
        with _manifest(tmp_path, path, request) as manifest:
            pipeline.ingest_files(1, str(path), manifest, port, 1 << 16,
                                  lambda done, total, *_files: reports.append((done, total)), concurrency=4)
            for entry in manifest.files():
                assert read(entry.file_id) == contents[entry.name]
    done = [done for done, _total in reports]
    assert done == sorted(done) and done[-1] == reports[-1][1] == sum(len(data) for data in contents.values())
    if isinstance(port, LocalArchive):
        assert len(archive_listing(port.root)) == 12


@pytest.mark.parametrize("corrupt", [3, 9], ids=["small-file", "large-file"])
def test_first_failure_stops_the_rest_and_undoes_every_write(tmp_path, target, corrupt, request):
    port, read = target
    path = tmp_path / "bundle.tar"
    _bundle(path, [SMALL] * 9 + [LARGE] + [SMALL] * 30, corrupt=corrupt)
    with bound_database("sqlite", tmp_path) as database:
        migrations.upgrade(database)
        with _manifest(tmp_path, path, request) as manifest:
            with pytest.raises(IngestError, match=rf"f{corrupt}\.bin: sha1 of the bytes is .*; deleted the \d+ files"):
                pipeline.ingest_files(1, str(path), manifest, port, 1 << 16, concurrency=4)
            assert [file_id for file_id in manifest.file_ids() if read(file_id) is not None] == []
    if isinstance(port, LocalArchive):
        assert archive_listing(port.root) == []
