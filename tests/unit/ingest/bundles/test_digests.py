"""Members hashed while a bundle streams in: the digests match what tarfile finds, whatever the
tar's format and however the stream is cut; odd tars give no wrong digest; a changed bundle's
digests are not trusted; and the worker really uses them (and checks them) instead of re-reading."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacifica.ingest.bundles import digests
from pacifica.ingest.common.errors import IngestError
from pacifica.ingest.db import migrations
from pacifica.ingest.jobs import pipeline
from pacifica.ingest.peers.local_archive import LocalArchive
from pacifica.ingest.peers.uniqueid import EmbeddedUniqueId
from pacifica.ingest.volume.spool import Spool
from tests.conftest import bound_database
from tests.support.bundles import file_object, transaction_metadata, write_tar

FORMATS = [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]


def _tar(members, tar_format, pax_size=False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        directory = tarfile.TarInfo("data")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax_size:
                info.pax_headers = {"size": str(len(data)), "comment": "x" * 300}
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "elsewhere"
        tar.addfile(link)
    return out.getvalue()


def _feed(raw: bytes, cuts) -> digests.StreamHasher:
    hasher = digests.StreamHasher()
    position = 0
    for cut in sorted(set(cuts)) + [len(raw)]:
        if cut > position:
            hasher.update(memoryview(raw)[position:cut])
            position = cut
    return hasher


def _expected(raw: bytes) -> dict[int, tuple[int, str]]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = [info for info in tar.getmembers() if info.isfile() and info.size]
    return {info.offset_data: (info.size, hashlib.sha1(raw[info.offset_data:info.offset_data + info.size]).hexdigest())
            for info in members}


names = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=150)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(st.tuples(names, st.binary(max_size=3000)), max_size=8, unique_by=lambda m: m[0]),
       tar_format=st.sampled_from(FORMATS), pax_size=st.booleans(),
       cuts=st.lists(st.integers(0, 40_000), max_size=12))
def test_digests_match_tarfiles_members_however_the_stream_is_cut(members, tar_format, pax_size, cuts):
    members = [(f"data/{name}", data) for name, data in members]
    try:
        raw = _tar(members, tar_format, pax_size and tar_format == tarfile.PAX_FORMAT)
    except ValueError:
        return  # a name too long for plain ustar
    hasher = _feed(raw, cuts)
    assert hasher.failed is None
    assert hasher.digests == _expected(raw)


def test_a_damaged_header_stops_the_hashing_and_records_nothing():
    raw = bytearray(_tar([("data/a", b"a" * 700), ("data/b", b"b" * 10)], tarfile.GNU_FORMAT))
    second_header = 512 * 4  # the directory, a's header, a's two data blocks
    raw[second_header + 130] ^= 0x01
    hasher = _feed(bytes(raw), [])
    assert hasher.failed and "checksum" in hasher.failed
    assert hasher.digests == {}


def test_a_size_that_does_not_fit_octal_is_read_as_base_256():
    header = tarfile.TarInfo("data/big")
    header.size = 9 * 2**30
    block = header.tobuf(tarfile.GNU_FORMAT)
    assert block[124] == 0o200
    assert digests._number(block[124:136]) == 9 * 2**30


def _stored_bundle(tmp_path, data: bytes, hashsum: str | None = None):
    """A bundle of one file received through the spool, as an upload is."""
    metadata = transaction_metadata()
    item = file_object("d", "f.bin", data)
    if hashsum:
        item["hashsum"] = hashsum
    metadata.append(item)
    source = tmp_path / "source.tar"
    write_tar(str(source), [("data/d/f.bin", data)], metadata)
    spool = Spool(str(tmp_path / "volume"), 1 << 16)
    with open(source, "rb") as body:
        spool.receive(1, body)
    return spool, spool.bundle_path(1)


def _recorded(path: str) -> dict[int, tuple[int, str]]:
    with open(path, "rb") as handle:
        return {offset: (size, digest) for offset, size, digest in digests.recorded(path, handle.fileno())}


@pytest.mark.parametrize("size", [3000, (1 << 20) + 5])
def test_the_worker_trusts_the_upload_digests_and_still_checks_them(tmp_path, size):
    data = os.urandom(size)
    with bound_database("sqlite", tmp_path) as database:
        migrations.upgrade(database)
        spool, path = _stored_bundle(tmp_path, data)
        document = json.loads(Path(digests.digests_path(path)).read_text())
        offset = next(key for key, (length, _digest) in document["members"].items() if length == size)
        assert document["members"][offset] == [size, hashlib.sha1(data).hexdigest()]
        # A digest that disagrees with the metadata fails the file without the bytes being read.
        document["members"][offset] = [size, "f" * 40]
        Path(digests.digests_path(path)).write_text(json.dumps(document))
        archive = LocalArchive(str(tmp_path / "archive"))
        with pipeline.load_bundle_metadata(1, path, spool, EmbeddedUniqueId()) as manifest:
            (entry,) = manifest.files()
            assert (entry.offset, entry.digest) == (int(offset), "f" * 40)
            with pytest.raises(IngestError, match=r"f{40}, metadata says"):
                pipeline.ingest_files(1, path, manifest, archive, 1 << 16, concurrency=2)
        assert not os.path.exists(archive.path(entry.file_id))


def test_digests_of_a_bundle_changed_after_the_upload_are_not_trusted(tmp_path):
    data = os.urandom(5000)
    with bound_database("sqlite", tmp_path) as database:
        migrations.upgrade(database)
        spool, path = _stored_bundle(tmp_path, data)
        with pipeline.load_bundle_metadata(1, path, spool, EmbeddedUniqueId()) as manifest:
            (entry,) = manifest.files()
            with open(path, "r+b") as bundle_file:  # one byte flipped in place: same inode and size
                bundle_file.seek(entry.offset)
                bundle_file.write(bytes([data[0] ^ 1]))
            assert _recorded(path) == {}
            archive = LocalArchive(str(tmp_path / "archive"))
            with pytest.raises(IngestError, match="metadata says"):
                pipeline.ingest_files(1, path, manifest, archive, 1 << 16)


def test_digests_from_another_boot_are_not_trusted(tmp_path):
    with bound_database("sqlite", tmp_path) as database:
        migrations.upgrade(database)
        _spool, path = _stored_bundle(tmp_path, b"z" * 100)
        assert _recorded(path)
        document = json.loads(Path(digests.digests_path(path)).read_text())
        document["bundle"]["boot_id"] = "another-boot"
        Path(digests.digests_path(path)).write_text(json.dumps(document))
        assert _recorded(path) == {}


def test_discarding_a_job_removes_its_digests(tmp_path):
    with bound_database("sqlite", tmp_path) as database:
        migrations.upgrade(database)
        spool, path = _stored_bundle(tmp_path, b"q" * 10)
        pipeline.load_bundle_metadata(1, path, spool, EmbeddedUniqueId()).close()
        spool.discard(1, path)
        assert os.listdir(tmp_path / "volume") == []
