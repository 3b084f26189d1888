"""The published client, pacifica-uploader, bundles and uploads to us unchanged."""

from __future__ import annotations

import hashlib
import os
import tempfile

from pacifica.uploader import Uploader
from pacifica.uploader.bundler import Bundler
from pacifica.uploader.metadata import MetaData, MetaObj

from tests.support.procs import wait_for


def test_uploader_bundle_and_upload(stack, tmp_path):
    sources = {"data/inst/run-1/a.dat": os.urandom(200_000), "data/inst/run-1/b.txt": b"notes\n" * 10}
    file_data, handles = [], []
    for arcname, data in sources.items():
        path = tmp_path / os.path.basename(arcname)
        path.write_bytes(data)
        handles.append(open(path, "rb"))  # noqa: SIM115 - the bundler reads them; closed below
        file_data.append({"name": arcname, "fileobj": handles[-1], "size": len(data),
                          "mtime": int(path.stat().st_mtime)})
    metadata = MetaData([
        MetaObj(destinationTable="Transactions.submitter", value=10),
        MetaObj(destinationTable="Transactions.project", value="1234a"),
        MetaObj(destinationTable="Transactions.instrument", value=54),
    ])
    with tempfile.TemporaryFile() as bundle:
        Bundler(metadata, file_data).stream(bundle)
        for handle in handles:
            handle.close()
        size = bundle.tell()
        bundle.seek(0)
        uploader = Uploader(upload_url=stack.url + "/upload", status_url=stack.url + "/get_state")
        job_id = uploader.upload(bundle, content_length=size)

    def finished():
        state = uploader.getstate(job_id)
        return state if state["complete"] else None

    state = wait_for(finished, 60, f"job {job_id} to complete", interval=0.2)
    assert (state["state"], state["task"], state["task_percent"]) == ("OK", "ingest metadata", "100.0"), state
    files = stack.files(job_id)
    assert {item["name"]: stack.archived(item["_id"]).read_bytes() for item in files} == \
        {os.path.basename(name): data for name, data in sources.items()}
    assert all(item["hashsum"] == hashlib.sha1(stack.archived(item["_id"]).read_bytes()).hexdigest()
               for item in files)
