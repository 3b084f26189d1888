"""Fixity audits against the embedded archive (a directory) and a tape-backed archive interface:
what is found whole, what is not, and what is kept of each check."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging

import pytest
import requests

from pacifica.ingest.common import states
from pacifica.ingest.db import archived, migrations, models
from pacifica.ingest.jobs import callbacks, fixity
from pacifica.ingest.peers.archive import HttpArchive
from pacifica.ingest.peers.local_archive import LocalArchive
from pacifica.ingest.peers.memory import MemoryMetadata
from tests.support.tape import TapeArchive

FILES = {1: (10, b"alpha" * 1000), 2: (20, b"bravo" * 2000), 3: (20, b"charlie" * 10), 4: (30, b"delta")}


@pytest.fixture
def kept(database, tmp_path):
    """Three completed jobs (10, 20, 30) whose four files are archived and recorded."""
    migrations.upgrade(database)
    store = LocalArchive(str(tmp_path / "archive"))
    for job_id in (10, 20, 30):
        models.update_state(job_id, states.OK, states.INGEST_METADATA, 100)
    for file_id, (job_id, data) in FILES.items():
        store.put(file_id, [data], len(data), 0)
        archived.record_files(job_id, [(file_id, f"data/f{file_id}.txt", len(data), "sha1",
                                        hashlib.sha1(data).hexdigest())], archived.Owner("alice", "1234a", "54"))
    return store


def _audit(store, **options):
    return fixity.audit(archived.walk_due(), store, fixity.AuditOptions(**options))


def test_whole_files_pass_and_get_a_second_digest(kept):
    report = _audit(kept)
    assert (report.checked, report.passed, report.failed, report.ok) == (4, 4, 0, True)
    assert report.bytes == sum(len(data) for _job, data in FILES.values())
    row = archived.IngestArchivedFile.get_by_id(2)
    assert row.outcome == archived.OK and row.sha256 == hashlib.sha256(FILES[2][1]).hexdigest()
    assert row.checked is not None
    events = archived.events_of(20)
    assert [(event.file_id, event.outcome, event.algorithm) for event in events] == [(2, "ok", "sha1"),
                                                                                     (3, "ok", "sha1")]
    assert models.read_history(20)[-1].message == "fixity: 2 files checked, all whole (sha1 and size)"


def test_a_flipped_byte_fails_naming_the_path_and_both_digests(kept, caplog):
    path = kept.path(2)
    data = bytearray(FILES[2][1])
    data[100] ^= 0x01
    with open(path, "r+b") as handle:
        handle.write(data)
    with caplog.at_level(logging.ERROR, logger="pacifica.ingest.jobs.fixity"):
        report = _audit(kept)
    assert (report.checked, report.passed, report.failed, report.ok) == (4, 3, 1, False)
    failure = report.as_dict()["failures"][0]
    expected, actual = hashlib.sha1(FILES[2][1]).hexdigest(), hashlib.sha1(bytes(data)).hexdigest()
    assert (failure["job_id"], failure["file_id"], failure["path"]) == (20, 2, "data/f2.txt")
    assert (failure["expected"], failure["actual"], failure["outcome"]) == (expected, actual, "failed")
    assert f"FAILED job 20 file 2 data/f2.txt: sha1 is {actual}, not {expected}" in report.as_text()
    # One JSON line in the log, the job's history, the record: all say so.
    logged = [json.loads(record.message) for record in caplog.records if record.message.startswith("{")]
    assert logged == [{"event": "fixity failure", **failure}]
    assert models.read_history(20)[-1].message.startswith("fixity FAILED: 1 of 2 files checked: data/f2.txt (file 2)")
    assert models.read_history(10)[-1].message.startswith("fixity: 1 files checked, all whole")
    assert archived.failing_jobs([10, 20, 30]) == {20}
    assert archived.failing_files(20)[0]["actual"] == actual


def test_a_file_the_archive_lost_is_missing(kept):
    kept.delete(4)
    report = _audit(kept)
    assert report.failed == 1 and report.failures[0].outcome == archived.MISSING
    assert archived.IngestArchivedFile.get_by_id(4).outcome == archived.MISSING


def test_a_file_that_changed_after_its_first_check_fails_its_sha256_too(kept):
    _audit(kept)
    # A collision of SHA-1 is out of reach here; a changed record of it stands for one.
    archived.IngestArchivedFile.update(hashsum=hashlib.sha1(b"other").hexdigest()).where(
        archived.IngestArchivedFile.file_id == 1).execute()
    archived.IngestArchivedFile.update(sha256="0" * 64).where(archived.IngestArchivedFile.file_id == 3).execute()
    report = _audit(kept)
    by_file = {check.file_id: check for check in report.failures}
    assert set(by_file) == {1, 3}
    assert by_file[3].algorithm == "sha256" and by_file[3].expected == "0" * 64


def test_files_found_whole_recently_are_not_checked_again(kept):
    _audit(kept)
    hour_ago = models.utcnow() - datetime.timedelta(hours=1)
    assert list(archived.walk_due(verified_before=hour_ago)) == []
    # Newly archived files were checked on their way in: not due either.
    assert archived.due(verified_before=hour_ago) == []
    assert len(archived.due(verified_before=models.utcnow() + datetime.timedelta(seconds=1))) == 4
    assert len(archived.due(job_id=20)) == 2


def test_a_rate_holds_reading_back():
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    throttle = fixity.Throttle(1000, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        throttle.take(500)
    assert clock[0] == pytest.approx(2.5)  # 2,500 bytes at 1,000 a second
    unlimited = fixity.Throttle(0, clock=lambda: 0.0, sleep=lambda seconds: slept.append(-1))
    unlimited.take(10**9)
    assert -1 not in slept


def test_files_on_tape_are_skipped_unless_asked_for(database):
    migrations.upgrade(database)
    tape = TapeArchive().start()
    try:
        data = b"x" * 5000
        tape.add("7", data)
        models.update_state(70, states.OK, states.INGEST_METADATA, 100)
        archived.record_files(70, [(7, "data/t.bin", len(data), "sha1", hashlib.sha1(data).hexdigest())],
                              archived.Owner())
        archive = HttpArchive(tape.url, requests.Session())
        skipped = _audit(archive)
        assert (skipped.checked, skipped.skipped_on_tape) == (0, 1)
        assert tape.calls[("GET", "7")] == 0 and tape.calls[("POST", "7")] == 0
        tape.recalls.set()  # the robot answers: a recall brings it to disk
        recalled = fixity.audit(archived.walk_due(), archive, fixity.AuditOptions(include_tape=True, recall_wait=10))
        assert (recalled.checked, recalled.passed) == (1, 1)
        assert tape.calls[("POST", "7")] == 1 and tape.calls[("GET", "7")] == 1
    finally:
        tape.stop()


def test_an_archive_that_cannot_be_reached_stops_the_audit_without_failing_files(kept):
    archive = HttpArchive("http://127.0.0.1:9", requests.Session())
    report = _audit(archive)
    assert report.stopped and not report.failed and not report.ok
    assert archived.IngestArchivedFile.select().where(archived.IngestArchivedFile.checked.is_null(False)).count() == 0


def test_backfill_records_completed_jobs_from_the_metadata_kept(database):
    migrations.upgrade(database)
    metadata = MemoryMetadata()
    metadata.ingest([{"destinationTable": "Transactions.project", "value": "p1"},
                     {"destinationTable": "Transactions.instrument", "value": 54},
                     {"destinationTable": "Files", "_id": 5, "name": "a.txt", "subdir": "raw", "size": 3,
                      "hashtype": "sha1", "hashsum": hashlib.sha1(b"abc").hexdigest()},
                     {"destinationTable": "Transactions._id", "value": 50}])
    models.update_state(50, states.OK, states.INGEST_METADATA, 100)
    models.update_state(51, states.FAILED, states.INGEST_FILES, 0)
    assert fixity.backfill(metadata) == (1, 1)
    row = archived.IngestArchivedFile.get_by_id(5)
    assert (row.job_id, row.name, row.size, row.project, row.instrument) == (50, "data/raw/a.txt", 3, "p1", "54")
    assert fixity.backfill(metadata) == (0, 0)


def test_a_failure_sends_the_jobs_callback_again_with_the_failures(kept):
    callbacks.register(20, "http://127.0.0.1:9/done")
    models.IngestCallback.update(status=callbacks.DELIVERED).execute()
    assert "fixity" not in callbacks.body(20)
    kept.delete(3)
    _audit(kept)
    row = models.IngestCallback.get_by_id(20)
    assert (row.status, row.attempts) == (callbacks.WAITING, 0)
    body = callbacks.body(20)
    assert body["state"] == "OK" and body["fixity"]["outcome"] == "failed"
    assert [(item["file_id"], item["path"], item["outcome"]) for item in body["fixity"]["failures"]] == \
        [(3, "data/f3.txt", "missing")]
    # Jobs whose files are whole keep their callback as it was.
    callbacks.register(10, "http://127.0.0.1:9/done")
    models.IngestCallback.update(status=callbacks.DELIVERED).where(models.IngestCallback.job_id == 10).execute()
    _audit(kept)
    assert models.IngestCallback.get_by_id(10).status == callbacks.DELIVERED
