"""The pipeline's stages as plain functions over the in-memory adapters of its four ports
(``peers.memory``, held to the same contract as the others).

No database, no broker, no peer: this is what the ports (``peers.base``) buy. Each adapter keeps
what it was given, so the tests see what the stages asked of each peer.
"""

from __future__ import annotations

import hashlib

import pytest

from pacifica.ingest.common.errors import IngestError, PeerRejected, PeerUnavailable
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.memory import MemoryArchive, MemoryMetadata, MemoryPolicy, MemoryUniqueId
from pacifica.ingest.volume.spool import Spool
from tests.support.bundles import make_bundle

FILES = {"data/run1/a.txt": b"alpha\n" * 1000, "data/run1/deep/b.bin": bytes(range(256)) * 300}


def _run(tmp_path, files=FILES, corrupt=None, policy=None, metadata=None, archive=None):
    """Run every upload stage of job 7 as the stage table orders them; return the fakes."""
    path = str(tmp_path / "bundle.tar")
    make_bundle(path, files, corrupt_hash=corrupt)
    spool = Spool(str(tmp_path / "volume"), 4096)
    fakes = {"uniqueid": MemoryUniqueId(100), "policy": policy or MemoryPolicy(),
             "archive": archive or MemoryArchive(), "metadata": metadata or MemoryMetadata()}
    pipeline.check_tar(path)
    with pipeline.load_bundle_metadata(7, path, spool, fakes["uniqueid"]) as manifest:
        pipeline.check_policy(7, manifest, "dmlb2001", fakes["policy"])
        pipeline.ingest_files(7, path, manifest, fakes["archive"], 4096, ledger_path=spool.ledger_path(7))
        pipeline.ingest_metadata(7, manifest, fakes["metadata"], fakes["archive"], move=False,
                                 ledger_path=spool.ledger_path(7))
    return fakes


def test_a_bundle_goes_through_every_stage(tmp_path):
    fakes = _run(tmp_path)
    assert fakes["uniqueid"].asked == [(2, "file")]
    assert sorted(fakes["archive"].files) == [100, 101] and fakes["archive"].durable == {100, 101}
    assert sorted(fakes["archive"].files.values()) == sorted(FILES.values())
    (document,) = fakes["metadata"].documents.values()
    files = {item["_id"]: item for item in document if item.get("destinationTable") == "Files"}
    assert sorted(files) == [100, 101]
    for file_id, item in files.items():
        assert item["hashsum"] == hashlib.sha1(fakes["archive"].files[file_id]).hexdigest()
    assert {"destinationTable": "Transactions._id", "value": 7} in document
    assert fakes["policy"].asked[0][1] == "dmlb2001"


def test_a_refusing_policy_stops_the_job_before_any_byte_is_archived(tmp_path):
    policy = MemoryPolicy(refuse="dmlb2001 may not ingest into project 1234a")
    with pytest.raises(PeerRejected, match="may not ingest"):
        _run(tmp_path, policy=policy)


def test_a_file_whose_bytes_disagree_with_its_hash_is_rolled_back(tmp_path):
    archive = MemoryArchive()
    path = str(tmp_path / "bundle.tar")
    make_bundle(path, FILES, corrupt_hash="data/run1/deep/b.bin")
    spool = Spool(str(tmp_path / "volume"), 4096)
    manifest = pipeline.load_bundle_metadata(8, path, spool, MemoryUniqueId(100))
    with pytest.raises(IngestError, match=r"b\.bin: sha1 of the bytes is .*deleted the 2 files"):
        pipeline.ingest_files(8, path, manifest, archive, 4096, ledger_path=spool.ledger_path(8))
    assert archive.files == {}, "a file of the failed job stayed in the archive"


class UnreachableArchive(MemoryArchive):
    """An archive whose every request fails to connect."""

    def _refused(self, file_id: int):
        return PeerUnavailable("archive", f"http://archive/{file_id}", "connection failed: [Errno 111] refused")

    def put(self, file_id, body, size, mtime):
        raise self._refused(file_id)

    def delete(self, file_id):
        raise self._refused(file_id)


def test_an_unreachable_archive_is_not_said_to_hold_what_it_never_got(tmp_path):
    path = str(tmp_path / "bundle.tar")
    make_bundle(path, FILES)
    spool = Spool(str(tmp_path / "volume"), 4096)
    manifest = pipeline.load_bundle_metadata(9, path, spool, MemoryUniqueId(100))
    with pytest.raises(IngestError) as failed:
        pipeline.ingest_files(9, path, manifest, UnreachableArchive(), 4096, ledger_path=spool.ledger_path(9),
                              file_retries=0, retry_delay=0)
    message = str(failed.value)
    assert "refused; deleted 0 of the 1 files this job wrote or began to write to the archive (0 of them whole); " \
           "could not delete file ids [100] (their sending had only begun: the archive may hold nothing of them)" \
           in message, message


def test_metadata_refused_deletes_every_archived_file(tmp_path):
    metadata = MemoryMetadata(refuse="Transactions.project 1234a does not exist")
    archive = MemoryArchive()
    with pytest.raises(IngestError, match="1234a does not exist; deleted the 2 files this job wrote"):
        _run(tmp_path, metadata=metadata, archive=archive)
    assert archive.files == {} and sorted(archive.deleted) == [100, 101]


def test_the_ledger_keeps_what_each_attempt_did_and_reads_back_only_whole_lines(tmp_path):
    path = str(tmp_path / "7.sent")
    first = pipeline.Ledger(path)
    for file_id in (100, 101, 102):
        first.start(file_id)
    first.verify(100)
    first.verify(101)
    first.close()
    with open(path, "a", encoding="ascii") as out:
        out.write("v 10")  # the end of "v 102" cut off by a crash: it must not name file 10
    again = pipeline.Ledger(path)
    assert (again.started, again.verified) == ({100, 101, 102}, {100, 101})
    again.reset([102])
    assert (pipeline.Ledger(path).started, pipeline.Ledger(path).verified) == ({102}, set())
    assert (pipeline.Ledger(None).started, pipeline.Ledger(None).verified) == (set(), set())


def test_a_batch_announced_whole_counts_only_the_files_it_began(tmp_path):
    path = str(tmp_path / "7.sent")
    first = pipeline.Ledger(path)
    first.announce(100, 101, 102, 103)
    first.start(100)
    first.start(101)
    first.verify(100)
    first.retract(102, 103)  # the batch stopped at 101
    first.close()
    with open(path, encoding="ascii") as lines:
        assert lines.read().count("\n") == 4 + 1 + 2, "announce, verify and retract are one write each"
    again = pipeline.Ledger(path)
    assert (again.started, again.verified) == ({100, 101}, {100})
    # A worker killed mid-batch takes nothing back: the next rollback deletes the whole batch.
    killed = pipeline.Ledger(str(tmp_path / "8.sent"))
    killed.announce(200, 201)
    killed.start(200)
    assert pipeline.Ledger(str(tmp_path / "8.sent")).started == {200, 201}


class OnceUnreachableArchive(MemoryArchive):
    """An archive that refuses the first connection for each file, then takes it."""

    def __init__(self):
        super().__init__()
        self.refused: set[int] = set()

    def put(self, file_id, body, size, mtime):
        if file_id not in self.refused:
            self.refused.add(file_id)
            raise PeerUnavailable("archive", f"http://archive/{file_id}", "connection failed: [Errno 111] refused")
        super().put(file_id, body, size, mtime)


def test_a_file_the_archive_refused_once_is_sent_again_and_the_warning_names_it(tmp_path, caplog):
    path = str(tmp_path / "bundle.tar")
    make_bundle(path, FILES)
    spool = Spool(str(tmp_path / "volume"), 4096)
    archive = OnceUnreachableArchive()
    with pipeline.load_bundle_metadata(9, path, spool, MemoryUniqueId(100)) as manifest:
        pipeline.ingest_files(9, path, manifest, archive, 4096, ledger_path=spool.ledger_path(9),
                              file_retries=1, retry_delay=0)
    assert archive.refused == {100, 101}
    assert sorted(archive.files) == [100, 101]
    warnings = [record.getMessage() for record in caplog.records if "trying again" in record.getMessage()]
    assert warnings == [
        "job 9: sending data/run1/a.txt as file 100: archive service at http://archive/100: connection failed: "
        "[Errno 111] refused; trying again (1 of 1)",
        "job 9: sending data/run1/deep/b.bin as file 101: archive service at http://archive/101: connection "
        "failed: [Errno 111] refused; trying again (1 of 1)"], warnings
