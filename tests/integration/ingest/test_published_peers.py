"""What the published peers do as deployed, and how this service copes with it.

- The archive interface under CherryPy (10 request threads) mixes up concurrent requests, and
  under uWSGI ``--http-socket`` closes every connection without saying so.
- A failed attempt is followed by one that sends only what is not verified; a rollback removes
  what every attempt wrote, and HEAD then finds none of the job's files.
- The metadata service refuses a document with a 500 and a ValueError: the job fails at once.
- uniqueid hands out the same ids to overlapping requests: ten scientists uploading at once
  each get their own job, and every job completes.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import threading

import pytest
import requests

from pacifica.core.http import make_session
from pacifica.ingest.common.errors import IngestError, PeerUnavailable
from pacifica.ingest.db import migrations
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.archive import ArchiveGate, HttpArchive
from pacifica.ingest.peers.uniqueid import EmbeddedUniqueId
from pacifica.ingest.volume.manifest import open_manifest
from pacifica.ingest.volume.spool import Spool
from tests.conftest import bound_database
from tests.support.bundles import make_bundle
from tests.support.procs import wait_for
from tests.support.published import PublishedArchive


class FailingArchive:
    """The real archive client, made to fail on some files (as a flapping network would)."""

    def __init__(self, archive: HttpArchive, fail_on: set[int]) -> None:
        self.archive = archive
        self.fail_on = fail_on
        self.puts: list[int] = []

    def put(self, file_id, body, size, mtime):
        self.puts.append(file_id)
        if file_id in self.fail_on:
            raise PeerUnavailable("archive interface", self.archive.url, "connection failed: flapping")
        self.archive.put(file_id, body, size, mtime)

    def __getattr__(self, name):
        return getattr(self.archive, name)


def _job(tmp_path, count: int = 8):
    files = {f"data/r/f{number}.bin": os.urandom(10_000 + number) for number in range(count)}
    path = tmp_path / "bundle.tar"
    make_bundle(str(path), files)
    return path, files


@pytest.mark.parametrize("deployment", ["cherrypy", "uwsgi-http"])
def test_a_retry_sends_only_what_is_not_verified_and_a_rollback_removes_every_attempt(deployment, stacks,
                                                                                       tmp_path):
    archive_service = stacks.archive_for(deployment)
    path, _files = _job(tmp_path)
    # The embedded uniqueid starts at 1: move the ids well away from any other test's.
    base = 7_000_000 + (1000 if deployment == "cherrypy" else 2000)
    with bound_database("sqlite", tmp_path) as db:
        migrations.upgrade(db)
        spool = Spool(str(tmp_path / "volume"), 1 << 20)
        manifest = pipeline.load_bundle_metadata(1, str(path), spool, _ids_from(base))
    ids = manifest.file_ids()
    assert ids[0] == base
    client = HttpArchive(archive_service.url, make_session(10, 2), gate=ArchiveGate(str(tmp_path / "lock")))
    ledger = str(tmp_path / "1.sent")

    # Attempt 1: file 3 keeps failing; 0-2 are verified, the retry of the stage is still to come.
    first = FailingArchive(client, {ids[3]})
    with pytest.raises(PeerUnavailable):
        pipeline.ingest_files(1, str(path), manifest, first, 4096, final=False, ledger_path=ledger,
                              retry_delay=0.01)
    assert first.puts[:3] == ids[:3] and set(first.puts[3:]) == {ids[3]}, first.puts
    assert all(archive_service.exists(file_id) for file_id in ids[:3])

    # Attempt 2 (the last): 0-2 are not sent again; file 6 fails for good, so everything goes.
    second = FailingArchive(client, {ids[6]})
    with pytest.raises(IngestError) as failed:
        pipeline.ingest_files(1, str(path), manifest, second, 4096, final=True, ledger_path=ledger,
                              retry_delay=0.01)
    assert not set(second.puts) & set(ids[:3]), "verified files were sent again"
    assert "deleted the 7 files this job wrote" in str(failed.value), str(failed.value)
    # HEAD finds none of the job's files: what attempt 1 wrote went too.
    assert [file_id for file_id in ids if archive_service.exists(file_id)] == []

    # An operator's retry after the rollback sends every file again, and completes.
    third = FailingArchive(client, set())
    pipeline.ingest_files(1, str(path), manifest, third, 4096, final=True, ledger_path=ledger)
    manifest.close()
    assert sorted(third.puts) == ids
    assert all(archive_service.exists(file_id) for file_id in ids)


@pytest.mark.parametrize("deployment, keeps", [("cherrypy", True), ("uwsgi-http", False), ("uwsgi-http11", True)])
def test_no_request_meets_a_connection_the_archive_closed(deployment, keeps, stacks, tmp_path):
    """uWSGI --http-socket answers HTTP/1.1 with no 'Connection: close' and closes. The client
    asks first, so that no request goes out on a dead connection: with no retries at all (the
    session's and the pipeline's set to 0), 60 files go in, are checked and deleted, on each
    documented deployment."""
    archive_service = stacks.archive_for(deployment)
    path, files = _job(tmp_path, 60)
    base = 7_100_000 + 1000 * PublishedArchive.DEPLOYMENTS.index(deployment)
    with bound_database("sqlite", tmp_path) as db:
        migrations.upgrade(db)
        manifest = pipeline.load_bundle_metadata(1, str(path), Spool(str(tmp_path / "volume"), 1 << 20),
                                                 _ids_from(base))
    client = HttpArchive(archive_service.url, make_session(10, 0), confirm=True,
                         gate=ArchiveGate(str(tmp_path / "lock")))
    with manifest:
        pipeline.ingest_files(1, str(path), manifest, client, 4096, file_retries=0)
        assert client.keep_alive is keeps
        for entry in manifest.files():
            # Read from the posix backend's directory: a GET of the archive under uWSGI
            # --http11-socket ends only at its 4 s socket timeout (no length, connection kept).
            assert archive_service.file(entry.file_id).read_bytes() == files[entry.path]
        for entry in manifest.files():
            client.delete(entry.file_id)
            assert not archive_service.exists(entry.file_id)


@pytest.mark.parametrize("name", ["postgres-redis", "postgres-redis-uwsgi"])
def test_metadata_refusal_fails_at_once_and_leaves_no_file(name, stacks, tmp_path):
    """The published Bundler names .pdb files chemical/x-pdb; the metadata service refuses that
    with HTTP 500 "ValueError: Invalid metadata for file N"."""
    http_stack = stacks.get(name)
    path = tmp_path / "bundle.tar"
    make_bundle(str(path), {"data/p/model.pdb": b"ATOM      1  N   MET A   1\n" * 40,
                            "data/p/notes.txt": b"notes\n"}, mimetype="chemical/x-pdb")
    job_id = http_stack.upload(path).json()["job_id"]
    final = http_stack.wait_complete(job_id, timeout=60)
    assert (final["state"], final["task"]) == ("FAILED", "ingest metadata"), final
    assert "Invalid metadata for file" in final["exception"], final["exception"]
    history = requests.get(http_stack.url + "/get_state", params={"job_id": job_id, "history": "true"},
                           timeout=30).json()["history"]
    started = [event for event in history if event["task"] == "ingest metadata"]
    began = datetime.datetime.fromisoformat(started[0]["time"])
    ended = datetime.datetime.fromisoformat(started[-1]["time"])
    assert started[-1]["state"] == "FAILED" and (ended - began).total_seconds() < 5, started
    with open_manifest(str(http_stack.volume / f"{job_id}.manifest.sqlite3")) as manifest:
        ids = manifest.file_ids()
    assert ids and not any(http_stack.archive.exists(file_id) for file_id in ids)


def _ids_from(base: int) -> EmbeddedUniqueId:
    """The embedded uniqueid (in the test's bound database), whose next file id is ``base``."""
    uniqueid = EmbeddedUniqueId()
    uniqueid.reserve(base - 1, "file")
    return uniqueid


def test_ten_scientists_at_once_each_get_their_own_job(stacks, peers, tmp_path):
    """The published uniqueid hands out the same id to overlapping requests (7 of 90 at three at
    once). Ten uploads at once: ten different jobs, each complete with its own files."""
    from pacifica.uploader import Uploader

    stack = stacks.get("postgres-redis")
    bundles = []
    for number in range(10):
        path = tmp_path / f"b{number}.tar"
        files = {f"data/s{number}/f{part}.dat": os.urandom(20_000 + part) for part in range(5)}
        make_bundle(str(path), files)
        bundles.append((path, files))
    barrier = threading.Barrier(10)

    def upload(bundle):
        path, _files = bundle
        uploader = Uploader(upload_url=stack.url + "/upload", status_url=stack.url + "/get_state")
        with open(path, "rb") as body:
            barrier.wait(30)
            return uploader.upload(body, content_length=path.stat().st_size)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        job_ids = list(pool.map(upload, bundles))
    assert len(set(job_ids)) == 10, job_ids

    for job_id, (_path, files) in zip(job_ids, bundles, strict=True):
        final = stack.wait_complete(job_id, timeout=120)
        assert (final["state"], final["task"], final["exception"]) == ("OK", "ingest metadata", ""), final
        stored = {item["name"]: stack.archived(item["_id"]).read_bytes() for item in stack.files(job_id)}
        assert stored == {os.path.basename(name): data for name, data in files.items()}
    all_ids = [item["_id"] for job_id in job_ids for item in stack.files(job_id)]
    assert len(all_ids) == len(set(all_ids)) == 50


def test_uniqueid_asked_one_at_a_time(peers, tmp_path):
    """Twenty reservations at once against the published uniqueid through this service's client:
    no range overlaps another."""
    from pacifica.ingest.peers.uniqueid import HttpUniqueId

    with bound_database("postgres", tmp_path, prefix="pacifica_ingest_uniqueid") as db:
        migrations.upgrade(db)
        client = HttpUniqueId(peers.uniqueid.url, make_session(10, 2))

        def reserve(_number):
            with db.connection_context():
                return client.reserve(7, "file")

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            starts = sorted(pool.map(reserve, range(20)))
    ranges = [set(range(start, start + 7)) for start in starts]
    assert all(not (a & b) for index, a in enumerate(ranges) for b in ranges[index + 1:]), starts


class ForgetfulUniqueId:
    """A uniqueid that hands out a range it had already handed out (what 0.5.1 does to requests
    that overlap), over the real wire protocol."""

    def __init__(self) -> None:
        self.answers = [100, 100, 90, 130]

    def handle(self, method, path, query, headers, body):
        start = self.answers.pop(0) if self.answers else 500
        count = int(query["range"][0])
        return 200, {"startIndex": start, "endIndex": start + count - 1}


def test_a_range_handed_out_twice_is_asked_for_again(tmp_path):
    from pacifica.ingest.peers.uniqueid import HttpUniqueId
    from tests.support.peers import PeerServer

    server = PeerServer(ForgetfulUniqueId()).start()
    try:
        with bound_database("sqlite", tmp_path) as db:
            migrations.upgrade(db)
            client = HttpUniqueId(server.url, make_session(5, 0))
            assert client.reserve(10, "file") == 100
            # 100 again and then 90 overlap what was handed out: both are refused.
            assert client.reserve(10, "file") == 130
    finally:
        server.stop()


def test_a_job_id_in_use_is_never_taken_over(tmp_path):
    from pacifica.ingest.compat import orm

    with bound_database("sqlite", tmp_path) as db:
        migrations.upgrade(db)
        assert orm.claim_job(41)
        orm.update_state(41, "OK", "ingest files", 50)
        assert not orm.claim_job(41)
        assert (orm.read_state(41).task, float(orm.read_state(41).task_percent)) == ("ingest files", 50.0)


def test_exception_is_empty_while_a_stage_waits_for_its_retry(stacks, peers, tmp_path):
    """While the policy is down the job is OK and waits; its exception stays empty (0.4.1's rule),
    and the reason is in its history."""
    http_stack = stacks.get("postgres-rabbitmq")
    path = tmp_path / "bundle.tar"
    make_bundle(str(path), {"data/w/a.txt": b"a" * 100})
    peers.policy.stop()
    try:
        job_id = http_stack.upload(path).json()["job_id"]

        def noted():
            body = requests.get(http_stack.url + "/get_state", params={"job_id": job_id, "history": "true"},
                                timeout=30).json()
            return body if any("will retry" in event["message"] for event in body["history"]) else None

        body = wait_for(noted, 30, "a retry note in the history", interval=0.02)
        assert body["state"] == "OK" and body["exception"] == "", body
    finally:
        peers.policy.start()
    # Whether the retry met the policy again is a matter of timing; the job ends either way.
    final = http_stack.wait_complete(job_id, timeout=60)
    assert final["exception"] == "" if final["state"] == "OK" else "policy" in final["exception"], final
