"""A bundle split as it arrives: every byte lands once, in the bundle at its place or in the
staged file of its member; the stages read staged members, the archive adopts them, and a staged
member that is not what the metadata says is refused like any other."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacifica.ingest.bundles import digests
from pacifica.ingest.common.errors import IngestError, PeerUnavailable, UploadError
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.local_archive import LocalArchive
from pacifica.ingest.peers.memory import MemoryArchive, MemoryUniqueId
from pacifica.ingest.volume import arrival
from pacifica.ingest.volume.spool import Spool
from tests.support.bundles import file_object, transaction_metadata, write_tar

MiB = 1 << 20
FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]


def _tar(members, tar_format) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


names = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=150)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(members=st.lists(st.tuples(names, st.binary(max_size=3000)), max_size=8, unique_by=lambda m: m[0]),
       tar_format=st.sampled_from(FORMATS), cuts=st.lists(st.integers(0, 40_000), max_size=12),
       stage_min=st.integers(1, 2000))
def test_every_byte_lands_once_in_the_bundle_or_its_members_staged_file(tmp_path, members, tar_format, cuts,
                                                                       stage_min):
    try:
        raw = _tar([(f"data/{name}", data) for name, data in members], tar_format)
    except ValueError:
        return  # a name too long for plain ustar
    work = tmp_path / f"run-{os.urandom(6).hex()}"
    work.mkdir()
    bundle = work / "bundle.tar"
    fd = os.open(bundle, os.O_WRONLY | os.O_CREAT)
    writer = arrival.BundleWriter(fd, arrival.staged_dir(str(bundle)), stage_min)
    hasher = digests.StreamHasher(writer)
    position = 0
    for cut in sorted(set(cuts)) + [len(raw)]:
        if cut > position:
            hasher.update(memoryview(raw)[position:cut])
            position = cut
    writer.finish(len(raw))
    os.close(fd)
    kept = bytearray(bundle.read_bytes())
    assert len(kept) == len(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        large = {info.offset_data: info.size for info in tar.getmembers() if info.isfile() and info.size >= stage_min}
    staged = arrival.staged_members(str(bundle))
    assert {offset: os.path.getsize(path) for offset, path in staged.items()} == large
    for offset, path in staged.items():
        size = large[offset]
        assert Path(path).read_bytes() == raw[offset:offset + size]
        assert kept[offset:offset + size] == bytes(size), "a staged member was written to the bundle too"
        kept[offset:offset + size] = raw[offset:offset + size]
    assert bytes(kept) == raw


def _bundle(tmp_path, files: dict[str, bytes], big_metadata: bool = False) -> Path:
    metadata = transaction_metadata()
    for name, data in files.items():
        subdir, _, base = name.rpartition("/")
        metadata.append(file_object(subdir, base, data))
    if big_metadata:  # a metadata.txt large enough to be staged itself
        metadata[0]["padding"] = "x" * (arrival.STAGE_MIN + 10)
    path = tmp_path / "source.tar"
    write_tar(str(path), list(files.items()), metadata)
    return path


def _receive(tmp_path, source: Path, stage: bool = True) -> tuple[Spool, str]:
    spool = Spool(str(tmp_path / "volume"), 1 << 16)
    with open(source, "rb") as body:
        spool.receive(1, body, stage_members=stage)
    return spool, spool.bundle_path(1)


def _ingest(tmp_path, spool: Spool, path: str, archive) -> list[int]:
    with pipeline.load_bundle_metadata(1, path, spool, MemoryUniqueId(100)) as manifest:
        pipeline.ingest_files(1, path, manifest, archive, 1 << 16, ledger_path=spool.ledger_path(1))
        return manifest.file_ids()


FILES = {"data/big/a.bin": os.urandom(MiB + 3), "data/small/b.txt": b"small" * 100,
         "data/big/c.bin": os.urandom(2 * MiB)}


def test_large_members_are_staged_and_adopted_without_a_copy(tmp_path):
    spool, path = _receive(tmp_path, _bundle(tmp_path, FILES, big_metadata=True))
    staged = arrival.staged_members(path)
    assert len(staged) == 3, "the two large files and metadata.txt"
    assert os.stat(path).st_blocks * 512 < 2 * MiB, "the bundle holds the staged bytes as well"
    archive = LocalArchive(str(tmp_path / "archive"))
    file_ids = _ingest(tmp_path, spool, path, archive)
    kept = {Path(archive.path(file_id)).read_bytes() for file_id in file_ids}
    assert kept == set(FILES.values())
    linked = [file_id for file_id in file_ids if os.stat(archive.path(file_id)).st_nlink == 2]
    assert len(linked) == 2, "the large files were copied, not linked"
    spool.discard(1, path)
    assert os.listdir(tmp_path / "volume") == [], "the staged members outlived their job"
    assert {Path(archive.path(file_id)).read_bytes() for file_id in file_ids} == set(FILES.values())


def test_staged_members_are_hashed_when_the_upload_digests_do_not_hold(tmp_path):
    spool, path = _receive(tmp_path, _bundle(tmp_path, FILES))
    digests.discard(path)
    archive = LocalArchive(str(tmp_path / "archive"))
    file_ids = _ingest(tmp_path, spool, path, archive)
    assert {Path(archive.path(file_id)).read_bytes() for file_id in file_ids} == set(FILES.values())


@pytest.mark.parametrize("trusted", [True, False])
def test_a_staged_member_that_changed_is_refused_and_kept_for_nothing(tmp_path, trusted):
    spool, path = _receive(tmp_path, _bundle(tmp_path, FILES))
    if not trusted:
        digests.discard(path)
    victim = max(arrival.staged_members(path).values())
    with open(victim, "r+b") as handle:  # one byte flipped: same size
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 1]))
    if trusted:  # the digest taken as it arrived no longer holds: say so by changing the bundle's
        os.utime(path, ns=(0, 0))
    archive = LocalArchive(str(tmp_path / "archive"))
    with pytest.raises(IngestError, match="metadata says"):
        _ingest(tmp_path, spool, path, archive)
    assert [name for name in os.listdir(tmp_path / "archive") if name.isdigit()] == []


def test_an_archive_that_cannot_adopt_reads_the_staged_members(tmp_path):
    spool, path = _receive(tmp_path, _bundle(tmp_path, FILES))
    archive = MemoryArchive()
    _ingest(tmp_path, spool, path, archive)
    assert set(archive.files.values()) == set(FILES.values())


class _FailsOnce(LocalArchive):
    """The local archive, unavailable from the third file it is given on (a disk that filled up)."""

    calls = 0

    def adopt(self, *args, **kwargs):
        self.calls += 1
        if self.calls >= 3:
            raise PeerUnavailable("archive", self.url, "No space left on device")
        super().adopt(*args, **kwargs)


def test_a_rolled_back_attempt_leaves_the_staged_members_for_the_next(tmp_path):
    files = {**FILES, "data/big/d.bin": os.urandom(MiB)}
    spool, path = _receive(tmp_path, _bundle(tmp_path, files))
    with pytest.raises(IngestError, match=r"No space left.*deleted the 4 files"):
        _ingest(tmp_path, spool, path, _FailsOnce(str(tmp_path / "archive")))
    assert [name for name in os.listdir(tmp_path / "archive") if name.isdigit()] == []
    archive = LocalArchive(str(tmp_path / "archive"))
    file_ids = _ingest(tmp_path, spool, path, archive)
    assert {Path(archive.path(file_id)).read_bytes() for file_id in file_ids} == set(files.values())


def test_a_cut_off_upload_leaves_no_staged_member(tmp_path):
    raw = _bundle(tmp_path, FILES).read_bytes()
    spool = Spool(str(tmp_path / "volume"), 1 << 16)
    with pytest.raises(UploadError, match="closed after"):
        spool.receive(1, io.BytesIO(raw[:MiB + 5000]), expected=len(raw), stage_members=True)
    assert os.listdir(tmp_path / "volume") == []


def test_without_staging_the_bundle_is_the_tar_as_sent(tmp_path):
    source = _bundle(tmp_path, FILES)
    _spool, path = _receive(tmp_path, source, stage=False)
    assert Path(path).read_bytes() == source.read_bytes()
    assert arrival.staged_members(path) == {}


def test_the_splitter_reads_a_repeated_pax_size_as_tarfile_does():
    records = b"13 size=1000\n13 size=2000\n"
    assert digests._pax_size(records) == 2000
