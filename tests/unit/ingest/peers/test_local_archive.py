"""The archive on this machine's disk: whole files only, each byte written once where it can be."""

from __future__ import annotations

import errno
import os

import pytest

from pacifica.ingest.common.errors import IntegrityError, PeerRejected
from pacifica.ingest.peers import local_archive
from pacifica.ingest.peers.local_archive import LocalArchive
from tests.support.archive import archive_listing


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "bundle"
    path.write_bytes(b"head" + b"0123456789" * 100 + b"tail")
    with open(path, "rb") as handle:
        yield handle.fileno()


def test_a_file_of_an_earlier_attempt_is_replaced_whole(tmp_path, bundle):
    archive = LocalArchive(str(tmp_path / "archive"))
    archive.put(5, [b"an earlier attempt"], 18, 1_600_000_000)
    archive.put_range(5, bundle, 4, 1000, 1_600_000_000)
    assert (tmp_path / "archive" / "5").read_bytes() == b"0123456789" * 100
    assert archive_listing(tmp_path / "archive") == ["5"]


def test_a_refused_file_leaves_nothing_behind(tmp_path, bundle):
    archive = LocalArchive(str(tmp_path / "archive"))

    def refuse():
        raise IntegrityError("hash differs")

    with pytest.raises(IntegrityError):
        archive.put_range(6, bundle, 4, 1000, 1_600_000_000, check=refuse)
    assert archive_listing(tmp_path / "archive") == []
    assert not (tmp_path / "archive" / LocalArchive.INCOMING).exists(), "a temporary name was made"


def test_a_small_file_is_created_under_its_id_and_a_large_one_linked_whole(tmp_path, bundle, monkeypatch):
    monkeypatch.setattr(LocalArchive, "DIRECT_MAX", 999)
    archive = LocalArchive(str(tmp_path / "archive"))
    opened = []
    real_open = os.open

    def watch(path, flags, *args, **kwargs):
        opened.append((path, flags & os.O_TMPFILE == os.O_TMPFILE))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(local_archive.os, "open", watch)
    archive.put_range(20, bundle, 4, 999, 1_600_000_000)
    archive.put_range(21, bundle, 4, 1000, 1_600_000_000)
    assert ("20", False) in opened, "the small file was not created under its id"
    assert (str(tmp_path / "archive"), True) in opened, "the larger file was not written unnamed"
    assert (tmp_path / "archive" / "20").read_bytes() == (b"0123456789" * 100)[:999]
    assert (tmp_path / "archive" / "21").read_bytes() == b"0123456789" * 100
    assert os.stat(tmp_path / "archive" / "20").st_mtime == 1_600_000_000


def test_a_second_delivery_never_empties_a_file_the_first_verified(tmp_path, bundle):
    # A broker may deliver a stage again while the first delivery still runs: the second finds
    # the file already there, and may only replace it whole, never open it for writing.
    archive = LocalArchive(str(tmp_path / "archive"))
    archive.put_range(22, bundle, 4, 1000, 1_600_000_000)
    kept = tmp_path / "archive" / "22"
    first = os.stat(kept).st_ino

    def refuse():
        assert kept.read_bytes() == b"0123456789" * 100, "the verified file was opened and truncated"
        raise IntegrityError("hash differs")

    with pytest.raises(IntegrityError):
        archive.put_range(22, bundle, 4, 1000, 1_600_000_000, check=refuse)
    assert kept.read_bytes() == b"0123456789" * 100 and os.stat(kept).st_ino == first
    archive.put_range(22, bundle, 4, 1000, 1_600_000_000)
    assert kept.read_bytes() == b"0123456789" * 100 and os.stat(kept).st_ino != first, "not replaced whole"


def test_a_partial_file_of_a_killed_writer_is_replaced_whole(tmp_path, bundle):
    archive = LocalArchive(str(tmp_path / "archive"))
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "23").write_bytes(b"01234")
    archive.put_range(23, bundle, 4, 1000, 1_600_000_000)
    assert (tmp_path / "archive" / "23").read_bytes() == b"0123456789" * 100
    assert archive_listing(tmp_path / "archive") == ["23"]


def test_a_failed_copy_removes_only_its_own_file(tmp_path, bundle, monkeypatch):
    archive = LocalArchive(str(tmp_path / "archive"))
    kept = tmp_path / "archive" / "24"
    real_copy = local_archive._copy_range

    def other_delivery_then_short(source, target, offset, size):
        # Meanwhile another delivery put its whole copy in place (a rename over the name).
        other = tmp_path / "archive" / "other"
        other.write_bytes(b"the other delivery's copy")
        os.replace(other, kept)
        return real_copy(source, target, offset, size // 2)

    monkeypatch.setattr(local_archive, "_copy_range", other_delivery_then_short)
    with pytest.raises(PeerRejected, match="received 500 of 1000 bytes"):
        archive.put_range(24, bundle, 4, 1000, 1_600_000_000)
    assert kept.read_bytes() == b"the other delivery's copy"


def test_a_small_file_is_checked_before_it_has_a_name(tmp_path, bundle):
    archive = LocalArchive(str(tmp_path / "archive"))

    def refuse():
        assert not (tmp_path / "archive" / "28").exists(), "the file was visible before its check"
        raise IntegrityError("hash differs")

    with pytest.raises(IntegrityError):
        archive.put_range(28, bundle, 4, 100, 1_600_000_000, check=refuse)
    assert archive_listing(tmp_path / "archive") == []


def test_a_short_source_leaves_no_file(tmp_path, bundle):
    archive = LocalArchive(str(tmp_path / "archive"))
    with pytest.raises(PeerRejected, match="received 1004 of 2000 bytes"):
        archive.put_range(25, bundle, 4, 2000, 1_600_000_000)
    assert archive_listing(tmp_path / "archive") == []


def test_an_archive_directory_made_again_is_written_to(tmp_path, bundle):
    archive = LocalArchive(str(tmp_path / "archive"))
    archive.put_range(26, bundle, 4, 1000, 1_600_000_000)
    (tmp_path / "archive" / "26").unlink()
    (tmp_path / "archive").rmdir()
    (tmp_path / "archive").mkdir()
    archive.put_range(27, bundle, 4, 1000, 1_600_000_000)
    assert archive_listing(tmp_path / "archive") == ["27"]


def test_without_unnamed_files_it_writes_under_incoming_and_renames(tmp_path, bundle, monkeypatch):
    # A filesystem without O_TMPFILE (some network and FUSE filesystems) cannot be mounted on
    # demand here: its answer to O_TMPFILE is given instead.
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(local_archive.os, "open", no_tmpfile)
    archive = LocalArchive(str(tmp_path / "archive"))
    archive.put_range(7, bundle, 4, 1000, 1_600_000_000)
    archive.put(8, [b"abc"], 3, 1_600_000_000)
    with pytest.raises(PeerRejected, match="received 3 of 4 bytes"):
        archive.put(9, [b"abc"], 4, 1_600_000_000)
    assert archive_listing(tmp_path / "archive") == ["7", "8"]
    assert (tmp_path / "archive" / "8").read_bytes() == b"abc"


def test_an_adopted_file_is_linked_not_copied(tmp_path):
    archive = LocalArchive(str(tmp_path / "archive"))
    staged = tmp_path / "staged"
    staged.write_bytes(b"x" * 5000)
    archive.adopt(10, str(staged), 5000, 1_600_000_000)
    kept = tmp_path / "archive" / "10"
    assert os.stat(kept).st_ino == os.stat(staged).st_ino
    assert os.stat(kept).st_mtime == 1_600_000_000
    # Deleting the archived file (a rollback) leaves the staged one for a later attempt.
    archive.delete(10)
    assert staged.read_bytes() == b"x" * 5000


def test_an_adopted_file_must_pass_its_check_and_hold_its_size(tmp_path):
    archive = LocalArchive(str(tmp_path / "archive"))
    staged = tmp_path / "staged"
    staged.write_bytes(b"x" * 10)

    def refuse():
        raise IntegrityError("hash differs")

    with pytest.raises(IntegrityError):
        archive.adopt(11, str(staged), 10, 1_600_000_000, check=refuse)
    with pytest.raises(PeerRejected, match="holds 10 of 12 bytes"):
        archive.adopt(12, str(staged), 12, 1_600_000_000)
    assert archive_listing(tmp_path / "archive") == []


def test_a_staged_symbolic_link_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the archive")
    link = tmp_path / "staged"
    link.symlink_to(secret)
    archive = LocalArchive(str(tmp_path / "archive"))
    with pytest.raises(PeerRejected):
        archive.adopt(13, str(link), len(b"not for the archive"), 1_600_000_000)
    assert archive_listing(tmp_path / "archive") == []


def test_a_directory_on_another_filesystem_cannot_be_adopted_from(tmp_path):
    archive = LocalArchive(str(tmp_path / "archive"))
    assert archive.can_adopt(str(tmp_path))
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("/dev/shm is not a filesystem of its own on this machine")
    assert not archive.can_adopt("/dev/shm")
