"""The S3 door's store on the volume: what a failed body leaves (nothing), what a second write of a
key leaves (the last record and its own bytes), what expiry removes."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest

from pacifica.ingest.volume.s3.store import Expected, ObjectStore, S3Failure
from tests.unit.ingest.volume.s3.test_prefix import Body


def _files(store: ObjectStore, user: str) -> list[str]:
    directory = store.user_dir(user)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_a_body_whose_digest_fails_leaves_nothing(tmp_path):
    store = ObjectStore(str(tmp_path), 4096)
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(S3Failure) as refused:
        store.put("ann", "k", Body(b"bytes"), Expected({"sha256": wrong}))
    assert refused.value.code == "BadDigest"
    assert _files(store, "ann") == [] and store.get("ann", "k") is None


def test_a_key_written_again_keeps_the_last_record_with_its_own_bytes(tmp_path):
    store = ObjectStore(str(tmp_path), 4096)
    store.put("ann", "k", Body(b"first"), Expected({}))
    second = store.put("ann", "k", Body(b"second!"), Expected({}))
    record = store.get("ann", "k")
    assert record == second and record.size == 7 and record.etag == hashlib.md5(b"second!").hexdigest()
    with open(store.data(record), "rb") as handle:
        assert handle.read() == b"second!"
    assert len(_files(store, "ann")) == 2  # one record, one data file: the first bytes are gone
    assert store.delete("ann", "k") and _files(store, "ann") == []


def test_expiry_removes_idle_uploads_and_objects_and_keeps_fresh_ones(tmp_path):
    store = ObjectStore(str(tmp_path), 4096)
    old = store.put("ann", "old", Body(b"old"), Expected({}))
    store.put("ann", "new", Body(b"new"), Expected({}))
    upload = store.create_upload("ann", "big.tar", "", "")
    store.put_part(upload, 1, Body(b"part"), Expected({}))
    past = time.time() - 7200
    os.utime(store.data(old), (past, past))
    for name in os.listdir(store.upload_dir(upload.upload_id)):
        os.utime(os.path.join(store.upload_dir(upload.upload_id), name), (past, past))
    os.utime(store.upload_dir(upload.upload_id), (past, past))
    assert store.expire(3600) == (1, 1)
    assert store.get("ann", "old") is None and store.get("ann", "new") is not None
    assert store.uploads("ann") == []
