"""Bundling and uploading as a scientist's script does, with the published pacifica-uploader."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pacifica.uploader import Uploader
from pacifica.uploader.bundler import Bundler
from pacifica.uploader.metadata import MetaData, MetaObj

from tests.support.procs import wait_for


def upload_with_uploader(url: str, sources: dict[str, bytes], workdir: Path, project: str = "1234a",
                         submitter: int = 10, instrument: int = 54, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """Bundle ``sources`` (arcname -> bytes, under ``data/``) with pacifica-uploader's Bundler,
    upload the bundle to the ingest service at ``url`` with its Uploader, and wait for the job to
    finish; return (job id, its final state)."""
    file_data, handles = [], []
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for arcname, data in sources.items():
            path = workdir / os.path.basename(arcname)
            path.write_bytes(data)
            handles.append(open(path, "rb"))  # noqa: SIM115 - the bundler reads them; closed below
            file_data.append({"name": arcname, "fileobj": handles[-1], "size": len(data),
                              "mtime": int(path.stat().st_mtime)})
        metadata = MetaData([
            MetaObj(destinationTable="Transactions.submitter", value=submitter),
            MetaObj(destinationTable="Transactions.project", value=project),
            MetaObj(destinationTable="Transactions.instrument", value=instrument),
        ])
        with tempfile.TemporaryFile() as bundle:
            Bundler(metadata, file_data).stream(bundle)
            size = bundle.tell()
            bundle.seek(0)
            uploader = Uploader(upload_url=url + "/upload", status_url=url + "/get_state")
            job_id = uploader.upload(bundle, content_length=size)
    finally:
        for handle in handles:
            handle.close()

    def finished():
        state = uploader.getstate(job_id)
        return state if state["complete"] else None

    return int(job_id), wait_for(finished, timeout, f"job {job_id} to complete", interval=0.2)
