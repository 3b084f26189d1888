"""cartd tells ingest's fixity record about a file that did not match its recorded digest, and
only then: a cart request naming another digest changes nothing."""

from __future__ import annotations

import hashlib

import peewee

from pacifica.cartd.peers.fixity_report import IngestFixityReport
from pacifica.ingest.db import archived, migrations


def test_a_mismatch_with_the_recorded_digest_is_recorded_as_failed(tmp_path):
    path = tmp_path / "ingest.sqlite3"
    database = peewee.SqliteDatabase(str(path))
    previous = archived.DB.obj
    archived.DB.initialize(database)
    try:
        migrations.upgrade(database)
        recorded = hashlib.sha1(b"good").hexdigest()
        archived.record_files(4, [(41, "data/a.bin", 4, "sha1", recorded)], archived.Owner("alice"))
        report = IngestFixityReport(f"sqliteext:///{path}")
        # A cart that asked for some other digest says nothing about the archived file.
        assert not report.failed("41", "sha1", "0" * 40, hashlib.sha1(b"bad!").hexdigest(), "asked for another")
        assert archived.IngestArchivedFile.get_by_id(41).outcome == archived.ARCHIVED
        assert report.failed("41", "sha1", recorded.upper(), hashlib.sha1(b"bad!").hexdigest(), "41: sha1 is ...")
        row = archived.IngestArchivedFile.get_by_id(41)
        assert row.outcome == archived.FAILED and row.checked is not None
        [event] = archived.events_of(4)
        assert (event.file_id, event.outcome, event.expected, event.actual, event.size) == \
            (41, "failed", recorded, hashlib.sha1(b"bad!").hexdigest(), 4)
        assert not report.failed("99", "sha1", recorded, "x", "no such file")
        assert not report.failed("../41", "sha1", recorded, "x", "not a file id")
    finally:
        database.close()
        archived.DB.initialize(previous)


def test_without_an_ingest_database_there_is_nothing_to_tell(tmp_path):
    missing = tmp_path / "none.sqlite3"
    assert not IngestFixityReport(f"sqliteext:///{missing}").failed("1", "sha1", "a", "b", "x")
    assert not missing.exists(), "looking created an empty database"
    assert not IngestFixityReport("").failed("1", "sha1", "a", "b", "x")
