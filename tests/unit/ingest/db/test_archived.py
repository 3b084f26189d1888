"""The record of archived files: what ``record_files`` writes, on each database."""

from __future__ import annotations

import pytest

from pacifica.ingest.db import archived, migrations
from pacifica.ingest.db.archived import IngestArchivedFile, Owner


@pytest.fixture
def db(database):
    migrations.upgrade(database)
    return database


def _rows(first, count):
    return [(file_id, f"data/{file_id}.bin", file_id * 10, "sha1", f"{file_id:040X}")
            for file_id in range(first, first + count)]


def test_every_row_is_recorded_across_batches_with_its_owner_and_digest_in_lower_case(db):
    added = archived.record_files(7, _rows(1, 2 * archived._BATCH + 13), Owner("alice", "p1", "54"))
    assert added == 2 * archived._BATCH + 13
    row = IngestArchivedFile.get_by_id(archived._BATCH + 5)
    assert (row.job_id, row.name, row.size, row.hashsum) == (7, f"data/{archived._BATCH + 5}.bin",
                                                             (archived._BATCH + 5) * 10, f"{archived._BATCH + 5:040x}")
    assert (row.submitter, row.project, row.instrument, row.outcome) == ("alice", "p1", "54", archived.ARCHIVED)
    assert row.archived == row.verified and row.checked is None and row.sha256 is None


def test_a_file_recorded_before_is_left_as_it_is_and_not_counted(db):
    archived.record_files(7, _rows(1, 10), Owner("alice"))
    # A retry records the job again: files 6 to 10 are there already, 11 to 20 are new.
    added = archived.record_files(7, [(file_id, "renamed", 1, "sha1", "f" * 40) for file_id in range(6, 21)],
                                  Owner("bob"))
    assert added == 10
    assert IngestArchivedFile.select().count() == 20
    kept = IngestArchivedFile.get_by_id(6)
    assert (kept.name, kept.submitter) == ("data/6.bin", "alice")
    assert IngestArchivedFile.get_by_id(20).submitter == "bob"
