"""The published client, pacifica-uploader, bundles and uploads to us unchanged."""

from __future__ import annotations

import hashlib
import os

from tests.support.uploader import upload_with_uploader


def test_uploader_bundle_and_upload(stack, tmp_path):
    sources = {"data/inst/run-1/a.dat": os.urandom(200_000), "data/inst/run-1/b.txt": b"notes\n" * 10}
    job_id, state = upload_with_uploader(stack.url, sources, tmp_path)
    assert (state["state"], state["task"], state["task_percent"]) == ("OK", "ingest metadata", "100.0"), state
    files = stack.files(job_id)
    assert {item["name"]: stack.archived(item["_id"]).read_bytes() for item in files} == \
        {os.path.basename(name): data for name, data in sources.items()}
    assert all(item["hashsum"] == hashlib.sha1(stack.archived(item["_id"]).read_bytes()).hexdigest()
               for item in files)
