"""Quotas: what counts against them, what they refuse (naming the quota, its limit, what is used
and what is left), and that a refusal stores nothing."""

from __future__ import annotations

import datetime

import pytest

from pacifica.ingest.common import states
from pacifica.ingest.db import archived, migrations, models
from pacifica.ingest.db import quotas as holds
from pacifica.ingest.db.archived import Owner
from pacifica.ingest.jobs import quotas

GB = 10**9


@pytest.fixture
def db(database):
    migrations.upgrade(database)
    return database


def _archive(job_id, sizes, owner):
    models.update_state(job_id, states.OK, states.INGEST_METADATA, 100)
    archived.record_files(job_id, [(job_id * 100 + number, f"data/{number}", size, "sha1", "0" * 40)
                                   for number, size in enumerate(sizes)], owner)


def test_archived_files_and_holds_count_and_a_rollback_gives_them_back(db):
    holds.put(holds.PROJECT, "p1", "olivia", max_bytes=GB, max_files=10)
    _archive(1, [100, 200], Owner("alice", "p1", "54"))
    holds.hold(2, Owner("bob", "p1", None), 300, 1)
    used = holds.usage(holds.PROJECT, "p1")
    assert (used.bytes, used.files, used.held_bytes, used.held_files) == (300, 2, 300, 1)
    assert holds.usage(holds.USER, "alice").bytes == 300 and holds.usage(holds.INSTRUMENT, "54").files == 2
    archived.forget_job(1)  # the job's files left the archive again
    holds.release(2)
    assert holds.usage(holds.PROJECT, "p1") == holds.Usage()


def test_a_period_counts_only_what_was_archived_within_it(db):
    _archive(1, [500], Owner("alice", "p1", None))
    archived.IngestArchivedFile.update(archived=models.utcnow() - datetime.timedelta(days=40)).execute()
    _archive(2, [70], Owner("alice", "p1", None))
    assert holds.usage(holds.USER, "alice").bytes == 570
    assert holds.usage(holds.USER, "alice", period=30 * 86400).bytes == 70


def test_an_upload_over_a_quota_is_refused_naming_limit_used_and_left(db):
    holds.put(holds.PROJECT, "p1", max_bytes=GB)
    holds.hold(7, Owner("alice", "p1", None), 600_000_000)
    with pytest.raises(quotas.QuotaRefused) as refused:
        quotas.check(Owner("bob", "p1", None), 600_000_000, None)
    assert refused.value.status == 413
    assert str(refused.value) == ("the project quota of 'p1' has 400000000 bytes left of its 1000000000 byte limit "
                                  "(0 archived, 600000000 held by uploads in flight); the upload needs 600000000")
    quotas.check(Owner("bob", "p1", None), 400_000_000, None)  # exactly what is left fits
    quotas.check(Owner("bob", "p2", None), 10 * GB, None)  # another project has no quota


def test_a_file_limit_and_a_limit_of_uploads_at_once(db):
    holds.put(holds.USER, "alice", max_files=3, max_uploads=2)
    _archive(1, [1, 1], Owner("alice", None, None))
    with pytest.raises(quotas.QuotaRefused, match="has 1 files left of its 3 file limit"):
        quotas.check(Owner("alice"), None, 2)
    for job_id in (11, 12):
        assert models.claim_job(job_id, "alice", lambda job: quotas.admit_job(job, Owner("alice"), 10))
    with pytest.raises(quotas.QuotaRefused) as refused:
        models.claim_job(13, "alice", lambda job: quotas.admit_job(job, Owner("alice"), 10))
    assert (refused.value.status, refused.value.retry_after) == (429, quotas.RETRY_AFTER_SECONDS)
    assert "alice has 2 uploads receiving bytes" in str(refused.value)
    # Nothing of the refused job was stored: no state row, no hold.
    assert models.IngestState.get_or_none(models.IngestState.job_id == 13) is None
    assert holds.IngestQuotaHold.get_or_none(holds.IngestQuotaHold.job_id == 13) is None
    # Once an upload is whole (its job moved on), another may start.
    models.update_state(11, states.OK, states.OPEN_TAR, 0)
    assert models.claim_job(13, "alice", lambda job: quotas.admit_job(job, Owner("alice"), 10))


def test_the_real_sizes_are_checked_at_commit_and_replace_the_hold(db):
    holds.put(holds.INSTRUMENT, "54", max_bytes=1000)
    holds.hold(5, Owner("alice", None, None), 10)
    quotas.commit(5, Owner("alice", "p1", "54"), 900, 3)
    row = holds.IngestQuotaHold.get_by_id(5)
    assert (row.project, row.instrument, row.bytes, row.files) == ("p1", "54", 900, 3)
    with pytest.raises(quotas.QuotaExceeded, match="the instrument quota of '54' has 100 bytes left"):
        quotas.commit(6, Owner("bob", "p2", "54"), 200, 1)
    quotas.commit(5, Owner("alice", "p1", "54"), 900, 3)  # a retried stage is not counted twice


def test_validate_lists_each_quota_a_document_goes_over(db):
    holds.put(holds.USER, "alice", max_bytes=100)
    holds.put(holds.PROJECT, "p1", max_files=1)
    found = quotas.problems(Owner("alice", "p1", None), 150, 2)
    assert [problem.split(" has ")[0] for problem in found] == ["quota: the project quota of 'p1'",
                                                                "quota: the user quota of 'alice'"]


def test_setting_a_quota_keeps_the_limits_not_given(db):
    holds.put(holds.USER, "alice", "olivia", max_bytes=GB, max_uploads=4)
    holds.put(holds.USER, "alice", "olivia", max_files=10)
    row = holds.get(holds.USER, "alice")
    assert (row.max_bytes, row.max_files, row.max_uploads, row.operator) == (GB, 10, 4, "olivia")
    holds.put(holds.USER, "alice", max_bytes=None)
    assert holds.get(holds.USER, "alice").max_bytes is None
    report = quotas.report([(holds.USER, "alice"), (holds.PROJECT, "none-set")])
    assert report[0]["left_files"] == 10 and report[0]["uploading"] == 0
    assert report[1]["max_bytes"] is None and report[1]["used_bytes"] == 0
    assert holds.remove(holds.USER, "alice") and not holds.remove(holds.USER, "alice")
    with pytest.raises(ValueError):
        holds.put("group", "x", max_bytes=1)
