"""The tus store hashes a bundle's members as the bytes arrive, and concatenates partial uploads
into a bundle whose members are hashed on the way: the worker has nothing to read twice."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from pacifica.ingest.bundles import digests
from pacifica.ingest.volume.resumable import TusError, TusStore
from pacifica.ingest.volume.spool import Spool
from tests.support.bundles import make_bundle


def _members(path: str) -> dict[int, tuple[int, str]]:
    with tarfile.open(path) as tar:
        return {info.offset_data: (info.size, hashlib.sha1(tar.extractfile(info).read()).hexdigest())
                for info in tar.getmembers() if info.isfile()}


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/x/a.bin": os.urandom(300_000), "data/x/b.txt": b"b\n" * 5000})
    return path.read_bytes()


def _load(path: str) -> dict[int, tuple[int, str]]:
    with open(path, "rb") as handle:
        return {offset: (size, digest) for offset, size, digest in digests.recorded(path, handle.fileno())}


def test_a_single_upload_received_in_chunks_leaves_the_digests(tmp_path, bundle):
    store = TusStore(Spool(str(tmp_path / "volume"), 4096), 24)
    upload = store.create(5, len(bundle), "u", {})
    offset = 0
    for start in range(0, len(bundle), 100_000):
        offset = store.append(upload, offset, io.BytesIO(bundle[start:start + 100_000]), None, None, 4096)
    path = store.finish(upload)
    assert _load(path) == _members(path) and len(_members(path)) == 3


def test_a_deferred_length_is_set_once_and_bounds_the_upload(tmp_path, bundle):
    store = TusStore(Spool(str(tmp_path / "volume"), 4096), 24)
    upload = store.create(6, None, "u", {})
    offset = store.append(upload, 0, io.BytesIO(bundle[:10_000]), None, None, 4096, limit=10**9)
    with pytest.raises(TusError) as short:
        store.set_length(upload, offset - 1)
    assert short.value.status == 400
    upload = store.set_length(upload, len(bundle))
    assert store.get(6).length == len(bundle)
    store.append(upload, offset, io.BytesIO(bundle[10_000:]), None, None, 4096)
    assert _load(store.finish(upload))


def test_partials_concatenate_into_a_hashed_bundle_and_are_removed(tmp_path, bundle):
    store = TusStore(Spool(str(tmp_path / "volume"), 4096), 24)
    cuts = [0, 70_001, 200_000, len(bundle)]
    parts = [store.create(None, cuts[i + 1] - cuts[i], "u", {}, concat="partial") for i in range(3)]
    for part, start, stop in reversed(list(zip(parts, cuts, cuts[1:], strict=False))):  # any order
        store.append(part, 0, io.BytesIO(bundle[start:stop]), None, None, 4096)
    assert {part.job_id for part in store.partials_of("u")} == {part.job_id for part in parts}
    path, size = store.concatenate(parts, 9, 4096)
    assert size == len(bundle) and Path(path).read_bytes() == bundle
    assert _load(path) == _members(path)
    assert store.partials_of("u") == [] and all(store.get(part.job_id) is None for part in parts)
