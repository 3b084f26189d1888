"""The cart's tar is laid out ahead: exact length, stable bytes, any range on its own, a manifest."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import tarfile

import pytest

from pacifica.cartd.volume.tarlayout import CartEntry, TarLayout


def _entries(root, files: dict[str, bytes], hash_type: str = "sha1") -> list[CartEntry]:
    entries = []
    for path, data in files.items():
        source = root / "staged" / path
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        entries.append(CartEntry(path, str(source), hash_type, hashlib.new(hash_type, data).hexdigest()))
    return entries


FILES = {
    "a/b/one.bin": os.urandom(1000),
    "a/empty": b"",
    "top.txt": b"exactly 512 bytes".ljust(512, b"."),
    "deep/" + "x" * 120 + "/long-name-over-100-characters.dat": os.urandom(70_000),
    "unicodé/fïle.txt": "données".encode(),
}


def test_the_layout_is_a_tar_with_every_file_and_a_checkable_manifest(tmp_path):
    layout = TarLayout("mine", _entries(tmp_path, FILES))
    data = b"".join(layout.read(block_size=4096))
    assert len(data) == layout.size and layout.size % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}
        directories = {member.name for member in tar.getmembers() if member.isdir()}
    manifest = files.pop("mine/manifest-sha1.txt").decode()
    assert files == {f"mine/{path}": content for path, content in FILES.items()}
    assert {"mine", "mine/a", "mine/a/b", "mine/deep", "mine/unicodé"} <= directories
    assert sorted(manifest.splitlines()) == sorted(f"{hashlib.sha1(content).hexdigest()}  {path}"
                                                   for path, content in FILES.items())
    # The system's own tools read it and check it.
    (tmp_path / "out").mkdir()
    (tmp_path / "cart.tar").write_bytes(data)
    subprocess.run(["tar", "-xf", str(tmp_path / "cart.tar"), "-C", str(tmp_path / "out")], check=True)
    checked = subprocess.run(["sha1sum", "-c", "manifest-sha1.txt"], cwd=tmp_path / "out" / "mine",
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_any_range_is_the_same_bytes_as_that_slice_of_the_whole(tmp_path):
    layout = TarLayout("mine", _entries(tmp_path, FILES))
    whole = b"".join(layout.read())
    chance = random.Random(7)
    for _ in range(200):
        start = chance.randrange(layout.size)
        stop = chance.randrange(start, layout.size + 1)
        assert b"".join(layout.read(start, stop, block_size=chance.choice([1, 500, 1 << 16]))) == whole[start:stop]
    assert b"".join(layout.read(layout.size - 1)) == whole[-1:]
    assert b"".join(layout.read(10, 10)) == b""


def test_the_etag_is_stable_and_follows_the_files_and_the_name(tmp_path):
    entries = _entries(tmp_path, FILES)
    first = TarLayout("mine", entries)
    assert TarLayout("mine", list(reversed(entries))).etag == first.etag
    assert b"".join(TarLayout("mine", list(reversed(entries))).read()) == b"".join(first.read())
    assert TarLayout("other", entries).etag != first.etag
    os.utime(entries[0].source, (1, 1))
    assert TarLayout("mine", entries).etag != first.etag


def test_one_manifest_per_hash_type_and_a_cart_file_of_that_name_is_kept(tmp_path):
    md5 = _entries(tmp_path, {"x.bin": b"x"}, "md5")
    sha256 = _entries(tmp_path, {"manifest-sha256.txt": b"mine, not the manifest"}, "sha256")
    layout = TarLayout("c", md5 + sha256)
    with tarfile.open(fileobj=io.BytesIO(b"".join(layout.read()))) as tar:
        names = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}
    assert names["c/manifest-sha256.txt"] == b"mine, not the manifest"
    assert names["c/_manifest-sha256.txt"].decode().endswith("  manifest-sha256.txt\n")
    assert names["c/manifest-md5.txt"] == f"{hashlib.md5(b'x').hexdigest()}  x.bin\n".encode()


def test_a_file_that_shrinks_while_sent_is_an_error_not_a_short_tar(tmp_path):
    entries = _entries(tmp_path, {"big.bin": os.urandom(10_000)})
    layout = TarLayout("c", entries)
    with open(entries[0].source, "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(OSError, match="shorter"):
        b"".join(layout.read())
