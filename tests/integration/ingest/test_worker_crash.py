"""A worker killed (SIGKILL) in the middle of 'ingest files' loses nothing: RabbitMQ redelivers
the unacknowledged stage to another worker, which finishes the job with the same file ids."""

from __future__ import annotations

import os
import signal

from tests.conftest import broker_urls
from tests.support import services
from tests.support.archive import archive_listing
from tests.support.bundles import make_bundle
from tests.support.procs import wait_for
from tests.support.stack import Stack

MiB = 1024 * 1024


def test_sigkilled_worker_mid_ingest_files(tmp_path, peers):
    broker, backend = broker_urls("rabbitmq", "crash")
    shared = tmp_path / "shared"
    stack = Stack(name="crash", root=tmp_path, settings={
        "ingest": {"data_dir": str(tmp_path / "data"), "volume_path": str(shared / "volume"),
                   "transfer_size": "1 Mb"},
        "uniqueid": {"url": peers.uniqueid.url},
        "archiveinterface": {"url": f"file://{shared}/archive"},
        "celery": {"broker_url": broker, "backend_url": backend},
        "database": {"peewee_url": services.create_postgres_db("pacifica_ingest_crash")},
    })
    stack.write_config()
    assert stack.cmd("dbsync").returncode == 0
    stack.start_server()
    first = stack.start_worker("doomed", concurrency=1)
    try:
        files = {f"data/big/part{n}.bin": os.urandom(120 * MiB) for n in range(5)}
        path = tmp_path / "big.tar"
        make_bundle(str(path), files)
        job_id = stack.upload(path).json()["job_id"]
        # 600 MB: the kernel copies and the hashing take a second or two, long enough to be caught in it.
        wait_for(lambda: stack.state(job_id).json()["task"] == "ingest files", 120, "ingest files to be under way")
        first.kill(signal.SIGKILL, group=True)
        before = peers.next_id("file")
        assert not stack.state(job_id).json()["complete"]
        second = stack.start_worker("rescuer", concurrency=1)
        final = stack.wait_complete(job_id, timeout=300)
        second.stop()
    finally:
        first.kill(signal.SIGKILL, group=True)  # still running if the test failed before killing it
        stack.stop()
    assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final
    assert peers.next_id("file") == before + 1, "the redelivered stage reserved new file ids"
    ids = {item["_id"]: files[f"data/{item['subdir']}/{item['name']}"] for item in stack.files(job_id)}
    assert archive_listing(shared / "archive", leftovers_allowed=True) == sorted(str(file_id) for file_id in ids), \
        "the archive holds missing, duplicate or partial files"
    for file_id, data in ids.items():
        assert (shared / "archive" / str(file_id)).read_bytes() == data

