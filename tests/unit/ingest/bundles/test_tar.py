"""Walking a bundle's headers: what ``tarfile`` would read whole into memory, however large the tar
says it is, is refused before it is read."""

from __future__ import annotations

import io
import tarfile

import pytest

from pacifica.ingest.bundles.tar import MAX_EXTENDED_CHAIN, MAX_EXTENDED_HEADER, BoundedTarInfo, walk
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


_FIELDS = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname", "uname", "gname",
           "devmajor", "devminor", "offset", "offset_data", "pax_headers", "sparse")


def _every_kind_of_member() -> list[tuple[tarfile.TarInfo, bytes]]:
    """Members of every kind a bundle may hold or a hostile one may try: files, directories,
    links, long, prefixed and non-ASCII names, large ids, a device, a FIFO."""
    def member(name, kind=tarfile.REGTYPE, **attributes):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mtime = 1_700_000_000
        for key, value in attributes.items():
            setattr(info, key, value)
        return info

    return [
        (member("metadata.txt", uname="alice", gname="staff", uid=1000, gid=100, mode=0o640), b"[]"),
        (member("data", tarfile.DIRTYPE, mode=0o755), b""),
        (member("data/run1/a.bin"), b"x" * 1000),
        (member("data/" + "deep/" * 30 + "long.bin"), b"long"),  # a ustar prefix, a GNU or pax long name
        (member("data/r\u00e9sum\u00e9 \u6587\u4ef6.txt"), b"utf-8"),
        (member("data/empty"), b""),
        (member("data/link", tarfile.SYMTYPE, linkname="run1/a.bin"), b""),
        (member("data/hard", tarfile.LNKTYPE, linkname="data/run1/a.bin"), b""),
        (member("data/big-ids", uid=0o7777777, gid=0o7777777, mtime=0o77777777777), b"ids"),
        (member("data/dev", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
        (member("data/fifo", tarfile.FIFOTYPE), b""),
    ]


def _read_all(data: bytes, tarinfo: type[tarfile.TarInfo]) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", tarinfo=tarinfo) as tar:
        return [tuple(getattr(info, field) for field in _FIELDS) for info in tar.getmembers()]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_headers_read_the_fast_way_are_what_tarfile_reads(fmt):
    members = _every_kind_of_member()
    if fmt == tarfile.USTAR_FORMAT:  # ustar has no room for these: they would not be written
        members = [(info, data) for info, data in members
                   if info.uid < 0o7777777 and not any(ord(c) > 127 for c in info.name)]
    data = _tar_bytes(members, fmt=fmt)
    expected = _read_all(data, tarfile.TarInfo)
    assert len(expected) == len(members)
    assert _read_all(data, BoundedTarInfo) == expected


def _with_header(data: bytes, change) -> bytes:
    """``data`` (a one-member tar) with its first header changed by ``change`` and its checksum
    made right again."""
    header = bytearray(data[:512])
    change(header)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + data[512:]


@pytest.mark.parametrize("change", [
    pytest.param(lambda h: h.__setitem__(slice(0, 100), b"data/v7-dir/".ljust(100, b"\0")), id="v7 directory"),
    pytest.param(lambda h: h.__setitem__(slice(124, 136), b"\x80" + (3).to_bytes(11, "big")), id="base-256 size"),
    pytest.param(lambda h: h.__setitem__(slice(136, 148), b" 1234567 \0\0\0"), id="spaces around a number"),
    pytest.param(lambda h: h.__setitem__(slice(100, 108), b"0000x44\0"), id="a number that is not octal"),
    pytest.param(lambda h: h.__setitem__(slice(0, 100), b"data/\xff\xfe".ljust(100, b"\0")), id="not UTF-8"),
    pytest.param(lambda h: h.__setitem__(slice(156, 157), b"\0"), id="old regular type"),
])
def test_odd_headers_are_read_as_tarfile_reads_them_or_refused_as_it_refuses_them(change):
    data = _with_header(_tar_bytes([(tarfile.TarInfo("data/a"), b"abc")], fmt=tarfile.GNU_FORMAT), change)
    try:
        expected = _read_all(data, tarfile.TarInfo)
    except tarfile.TarError as exc:
        with pytest.raises(type(exc)):
            _read_all(data, BoundedTarInfo)
        return
    assert _read_all(data, BoundedTarInfo) == expected


def test_a_header_with_a_wrong_or_signed_checksum_is_left_to_tarfile():
    data = _tar_bytes([(tarfile.TarInfo("data/\u00e9"), b"abc")], fmt=tarfile.GNU_FORMAT)
    header = bytearray(data[:512])
    signed = 256 + sum(header[:148]) + sum(header[156:]) - 256 * sum(1 for byte in header if byte > 127)
    header[148:156] = b"%06o\0 " % signed
    assert _read_all(bytes(header) + data[512:], BoundedTarInfo) == _read_all(bytes(header) + data[512:],
                                                                               tarfile.TarInfo)
    header[148:156] = b"%06o\0 " % (signed + 1)
    with pytest.raises(tarfile.ReadError):
        _read_all(bytes(header) + data[512:], BoundedTarInfo)


def test_plain_headers_are_read_without_tarfiles_general_reader(monkeypatch):
    data = _tar_bytes([(tarfile.TarInfo(f"data/f{number}"), b"abc") for number in range(5)], fmt=tarfile.GNU_FORMAT)
    general = tarfile.TarInfo.frombuf.__func__
    calls = []

    def counted(cls, buf, encoding, errors):
        calls.append(bytes(buf[:100]).rstrip(b"\0"))
        return general(cls, buf, encoding, errors)

    monkeypatch.setattr(tarfile.TarInfo, "frombuf", classmethod(counted))
    assert [row[0] for row in _read_all(data, BoundedTarInfo)] == [f"data/f{number}" for number in range(5)]
    assert calls == [b""]  # only the end-of-archive block
