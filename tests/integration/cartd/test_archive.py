"""Cartd's archive client against the published archive interface: stage, status, pull."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pacifica.cartd.peers.archive import ArchiveRequests
from pacifica.core.http import make_session
from pacifica.ingest.common.errors import IntegrityError, PeerError
from pacifica.ingest.peers.archive import HttpArchive

FILE_ID = 987_650_001


@pytest.fixture(scope="module")
def archived(archive):
    data = os.urandom(3 * 1024 * 1024 + 17)
    HttpArchive(archive.url, make_session(30, 1)).put(FILE_ID, [data], len(data), 1_600_000_000)
    return data


def test_stage_status_and_pull_a_file(archive, archived, tmp_path):
    requests_ = ArchiveRequests(archive.url, transfer_size=1 << 20)
    requests_.stage_file(FILE_ID)
    status = json.loads(requests_.status_file(FILE_ID))
    assert status["file"] == FILE_ID
    assert int(status["filesize"]) == len(archived)
    assert status["file_storage_media"] == "disk"
    target = tmp_path / "a" / "b.bin"
    target.parent.mkdir(parents=True)
    requests_.pull_file(FILE_ID, str(target), hashlib.sha1(archived).hexdigest(), "sha1")
    assert target.read_bytes() == archived
    assert os.listdir(target.parent) == ["b.bin"]


def test_a_pull_whose_hash_differs_leaves_nothing(archive, archived, tmp_path):
    target = tmp_path / "c.bin"
    with pytest.raises(IntegrityError, match="the cart asked for"):
        ArchiveRequests(archive.url, transfer_size=1 << 20).pull_file(FILE_ID, str(target), "0" * 32, "md5")
    assert os.listdir(tmp_path) == []


def test_a_missing_file_is_a_peer_error(archive, tmp_path):
    requests_ = ArchiveRequests(archive.url, transfer_size=1 << 20)
    with pytest.raises(PeerError):
        requests_.pull_file(987_659_999, str(tmp_path / "x"), "", "md5", retry=1)
    assert os.listdir(tmp_path) == []


def test_many_requests_in_a_row_to_an_archive_under_uwsgi_http_socket(stacks):
    """uWSGI --http-socket (the archive interface's documented Linux deployment) closes each
    connection after its answer without saying so; a request sent on the pooled connection
    before the close arrives meets a dead connection. Cartd's client asks again."""
    archive = stacks.archive_for("uwsgi-http")
    data = os.urandom(1000)
    ids = range(FILE_ID + 10, FILE_ID + 13)
    for file_id in ids:
        HttpArchive(archive.url, make_session(30, 1)).put(file_id, [data], len(data), 1)
    client = ArchiveRequests(archive.url, transfer_size=1 << 20)
    for _ in range(40):
        for file_id in ids:
            client.stage_file(file_id)
            assert int(json.loads(client.status_file(file_id))["filesize"]) == len(data)


def test_a_pull_streams_and_holds_a_block_not_the_file(archive, tmp_path):
    """64 MiB pulled with 1 MiB blocks: the client holds a few blocks at a time, not the file
    (reading a success's whole body to check it for an error once made a 1 GiB pull hold 2.3 GB)."""
    import tracemalloc

    data = os.urandom(64 * 1024 * 1024)
    HttpArchive(archive.url, make_session(30, 1)).put(FILE_ID + 20, [data], len(data), 1)
    digest = hashlib.sha1(data).hexdigest()
    del data
    tracemalloc.start()
    try:
        ArchiveRequests(archive.url, transfer_size=1 << 20).pull_file(FILE_ID + 20, str(tmp_path / "big"), digest,
                                                                      "sha1")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"the pull held {peak / 2**20:.0f} MiB"
    assert (tmp_path / "big").stat().st_size == 64 * 1024 * 1024
