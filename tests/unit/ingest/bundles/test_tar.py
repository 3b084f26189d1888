"""Walking a bundle's headers: what ``tarfile`` would read whole into memory, however large the tar
says it is, is refused before it is read."""

from __future__ import annotations

import io
import tarfile

import pytest

from pacifica.ingest.bundles.tar import MAX_EXTENDED_CHAIN, MAX_EXTENDED_HEADER, walk
from pacifica.ingest.common.errors import BundleError
from pacifica.ingest.jobs import pipeline


def _tar_bytes(members, fmt=tarfile.PAX_FORMAT, pax_headers=None) -> bytes:
    """A tar of ``members`` (TarInfo, bytes) in ``fmt``, with global ``pax_headers``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, pax_headers=pax_headers) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _member(name: str, **pax: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.pax_headers = pax
    return info


def _names(path) -> list[str]:
    return [info.name for _tar, info in walk(str(path))]


def test_an_ordinary_tar_is_walked_in_order(tmp_path):
    path = tmp_path / "t.tar"
    path.write_bytes(_tar_bytes([(_member("data/" + "n" * 300), b"abc"), (_member("data/b", comment="c"), b"")]))
    assert _names(path) == ["data/" + "n" * 300, "data/b"]


def test_an_extended_header_larger_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / "t.tar"
    path.write_bytes(_tar_bytes([(_member("data/a", comment="x" * (MAX_EXTENDED_HEADER + 1)), b"abc")]))
    with pytest.raises(BundleError, match="extended header of"):
        _names(path)


def test_a_gnu_long_name_larger_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / "t.tar"
    path.write_bytes(_tar_bytes([(tarfile.TarInfo("data/" + "n" * (MAX_EXTENDED_HEADER + 10)), b"abc")],
                                fmt=tarfile.GNU_FORMAT))
    with pytest.raises(BundleError, match="extended header of"):
        _names(path)


def test_a_chain_of_extended_headers_is_refused(tmp_path):
    """Each extended header is held until the member it describes: a chain of them is bounded."""
    one = _tar_bytes([(_member("data/a", comment="c"), b"abc")])
    pax = one[:1024]  # the pax header block and its one block of records
    assert pax[156:157] == tarfile.XHDTYPE
    path = tmp_path / "t.tar"
    path.write_bytes(pax * MAX_EXTENDED_CHAIN + one)
    with pytest.raises(BundleError, match="extended headers in a row"):
        _names(path)
    path.write_bytes(pax * (MAX_EXTENDED_CHAIN - 2) + one)
    assert _names(path) == ["data/a"]


def test_global_headers_adding_up_past_the_bound_are_refused(tmp_path):
    size = MAX_EXTENDED_HEADER // 2 + 1000
    whole = _tar_bytes([(_member("data/a"), b"abc")], pax_headers={"comment": "g" * size})
    global_header = whole[:512 + -(-(size + 20) // 512) * 512]
    assert global_header[156:157] == tarfile.XGLTYPE
    path = tmp_path / "t.tar"
    path.write_bytes(global_header + whole)
    with pytest.raises(BundleError, match="global headers of more than"):
        _names(path)


def test_sparse_members_are_refused(tmp_path):
    old_sparse = tarfile.TarInfo("data/s")
    old_sparse.type = tarfile.GNUTYPE_SPARSE
    path = tmp_path / "t.tar"
    path.write_bytes(_tar_bytes([(old_sparse, b"")], fmt=tarfile.GNU_FORMAT))
    with pytest.raises(BundleError, match="sparse"):
        _names(path)
    pax_sparse = _member("data/s", **{"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                                      "GNU.sparse.name": "data/s", "GNU.sparse.realsize": "10"})
    path.write_bytes(_tar_bytes([(pax_sparse, b"1\n0\n5\n" + b"\0" * 506 + b"abcde")]))
    with pytest.raises(BundleError, match="sparse"):
        _names(path)


def test_the_open_tar_stage_refuses_such_a_bundle(tmp_path):
    path = tmp_path / "t.tar"
    path.write_bytes(_tar_bytes([(_member("data/a", comment="x" * (MAX_EXTENDED_HEADER + 1)), b"abc")]))
    with pytest.raises(BundleError, match="Failed to open tarfile: an extended header"):
        pipeline.check_tar(str(path))
