"""The published project's own integration scenarios, on every database and broker.

Each runs against a real server and Celery worker, the published archive interface and the
HTTP test peers, and again on the fully embedded stack (peers, queue and worker built in);
states are polled with a deadline.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from pacifica.ingest.volume.manifest import open_manifest
from tests.support.bundles import make_bundle, move_document, write_tar
from tests.support.procs import wait_for
from tests.support.stack import wait_results

GOOD_FILES = {
    "data/a/b/results.csv": b"x,y\n1,2\n" * 100,
    "data/a/c/\u65e5\u672c\u8a9e\u306e\u30d5\u30a1\u30a4\u30eb.txt": "\u3053\u3093\u306b\u3061\u306f".encode() * 50,
    "data//a/b/double.txt": b"double slash subdir\n",
    "data/top.bin": os.urandom(3 * 1024 * 1024 + 17),
}


def _post_bundle(stack, tmp_path, files=GOOD_FILES, **kwargs):
    path = tmp_path / "bundle.tar"
    metadata = make_bundle(str(path), files, **kwargs)
    response = stack.upload(path, user="alice")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "OK" and body["task"] == "UPLOADING"
    return body["job_id"], metadata


def test_good_upload(stack, tmp_path):
    job_id, _metadata = _post_bundle(stack, tmp_path)
    final = stack.wait_complete(job_id)
    assert final["state"] == "OK", final
    assert final["task"] == "ingest metadata"
    assert final["task_percent"] == "100.0"
    assert final["exception"] == ""

    document = stack.metadata(job_id)
    assert document is not None, "the metadata service never received the transaction"
    assert {"destinationTable": "Transactions._id", "value": job_id} in document
    files = stack.files(job_id)
    assert len(files) == len(GOOD_FILES)
    by_path = {}
    for item in files:
        assert isinstance(item["_id"], int)
        assert not item["subdir"].startswith("data")
        assert "//" not in item["subdir"]
        by_path["/".join(filter(None, [item["subdir"], item["name"]]))] = item
    for arcname, data in GOOD_FILES.items():
        clipped = "/".join(part for part in arcname.split("/")[1:] if part)
        item = by_path[clipped]
        assert stack.archived(item["_id"]).read_bytes() == data, arcname
    assert len({item["_id"] for item in files}) == len(files)
    if not stack.embedded:
        # The user went to the policy service in the auth header.
        assert b"X-Http-Authed-User: alice" in stack.peers.policy.requests
    # The bundle leaves the volume just after the job reports complete.
    wait_for(lambda: not (stack.volume / f"{job_id}.tar").exists(), 10, "the completed job's bundle to be removed")


def test_bad_project_fails_policy_validation(stack, tmp_path):
    # The published policy knows the metadata's projects; the embedded one only requires that one is named.
    project, reason = ("", "Transactions.project has no value") if stack.embedded else \
        ("no-such-project", "Invalid values for project")
    job_id, _ = _post_bundle(stack, tmp_path, project=project)
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"], final["task_percent"]) == ("FAILED", "Policy Validation", "0.0")
    assert reason in final["exception"]


def _archived_ids(stack, job_id):
    """The file ids 'load metadata' reserved for a job (its manifest stays on the volume after a failure)."""
    with open_manifest(str(stack.volume / f"{job_id}.manifest.sqlite3")) as manifest:
        return manifest.file_ids()


def test_wrong_hashsum_fails_ingest_files(stack, tmp_path):
    files = {"data/first.txt": b"sent before the bad one\n", **GOOD_FILES}
    job_id, _ = _post_bundle(stack, tmp_path, files=files, corrupt_hash="data/a/b/results.csv")
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "ingest files")
    assert "data/a/b/results.csv" in final["exception"]
    # One file at a time (archive_concurrency 1): the good first one and the bad one were sent.
    assert re.search(r"deleted the 2 files this job wrote", final["exception"]), final["exception"]
    assert not any(stack.archived(file_id).exists() for file_id in _archived_ids(stack, job_id))
    assert (stack.volume / f"{job_id}.tar").exists(), "a failed job's bundle must stay for retry"


def test_bad_mimetype_fails_ingest_metadata(stack, tmp_path):
    job_id, _ = _post_bundle(stack, tmp_path, mimetype="not a mimetype")
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "ingest metadata")
    # The published metadata service says no with a 500 and a ValueError: a refusal, not an outage.
    assert ("mimetype" if stack.embedded else "Invalid metadata for file") in final["exception"]
    assert f"deleted the {len(GOOD_FILES)} files" in final["exception"]
    assert not any(stack.archived(file_id).exists() for file_id in _archived_ids(stack, job_id))
    if not stack.embedded:
        assert not any(stack.archive.exists(file_id) for file_id in _archived_ids(stack, job_id))


def test_metadata_not_json_fails_load_metadata(stack, tmp_path):
    path = tmp_path / "bundle.tar"
    write_tar(str(path), [("data/a.txt", b"abc")], b"{this is not json")
    job_id = stack.upload(path).json()["job_id"]
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "load metadata")
    assert "JSON" in final["exception"]


def test_body_not_a_tar_is_refused_at_the_door_and_fails_open_tar_when_resumed(stack, tmp_path):
    path = tmp_path / "bundle.tar"
    not_a_tar = b"this is certainly not a tar file " * 100
    path.write_bytes(not_a_tar)
    refused = stack.upload(path)
    assert refused.status_code == 400, refused.text
    assert "not a tar" in refused.json()["message"] and "--data-binary @bundle.tar" in refused.json()["message"]
    assert "job_id" not in refused.json()
    # A resumable upload is looked at only once whole: the same bytes fail 'open tar'.
    job_id = stack.tus_send(not_a_tar)
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"], final["task_percent"]) == ("FAILED", "open tar", "0.0")
    if stack.embedded:
        return  # the embedded setup keeps no Celery results; the other stacks show what Celery recorded
    results = wait_results(stack, job_id, {"pacifica.ingest.open_tar"})
    assert results["pacifica.ingest.open_tar"] == "FAILURE", "Celery recorded a failed stage as success"
    assert "pacifica.ingest.load_metadata" not in stack.task_results(job_id), "the chain went on after a failure"


def test_unknown_job_is_404(stack):
    response = stack.state(987654321)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert "987654321" in response.json()["message"]


def test_good_move(stack, tmp_path):
    source = tmp_path / "instrument-output.dat"
    data = os.urandom(4096)
    source.write_bytes(data)
    response = stack.move(move_document({"data/run1/instrument-output.dat": str(source)}))
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"], final["task_percent"]) == ("OK", "ingest metadata", "100.0"), final
    files = stack.files(job_id)
    assert len(files) == 1
    assert stack.archived(files[0]["_id"]).read_bytes() == data
    assert not source.exists()


def test_move_of_missing_source_fails_move_files(stack, tmp_path):
    source = tmp_path / "will-vanish.dat"
    source.write_bytes(b"soon gone")
    document = move_document({"data/run1/will-vanish.dat": str(source)})
    source.unlink()
    job_id = stack.move(document).json()["job_id"]
    final = stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "move files")
    assert "will-vanish.dat" in final["exception"]


def test_hundred_file_move(stack, tmp_path):
    sources = {}
    for number in range(100):
        source = tmp_path / f"file{number:03d}.dat"
        source.write_bytes(hashlib.sha1(str(number).encode()).digest() * 10)
        sources[f"data/many/file{number:03d}.dat"] = str(source)
    job_id = stack.move(move_document(sources)).json()["job_id"]
    final = stack.wait_complete(job_id, timeout=120)
    assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final
    files = stack.files(job_id)
    assert len(files) == 100
    for item in files:
        expected = hashlib.sha1(str(int(item["name"][4:7])).encode()).digest() * 10
        assert stack.archived(item["_id"]).read_bytes() == expected


@pytest.fixture
def archive_down(http_stack):
    http_stack.archive.stop()
    yield http_stack.archive
    http_stack.archive.start()


def test_archive_down_fails_ingest_files(http_stack, archive_down, tmp_path):
    job_id, _ = _post_bundle(http_stack, tmp_path)
    final = http_stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "ingest files")
    assert "archive interface" in final["exception"] and archive_down.url in final["exception"]


def test_archive_down_fails_move_files(http_stack, archive_down, tmp_path):
    source = tmp_path / "x.dat"
    source.write_bytes(b"x")
    job_id = http_stack.move(move_document({"data/x.dat": str(source)})).json()["job_id"]
    final = http_stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "move files")
    assert source.exists(), "a failed move lost its source file"


@pytest.fixture
def policy_down(peers):
    peers.policy.stop()
    yield peers.policy
    peers.policy.start()


def test_policy_down_fails_policy_validation(http_stack, policy_down, tmp_path):
    job_id, _ = _post_bundle(http_stack, tmp_path)
    final = http_stack.wait_complete(job_id)
    assert (final["state"], final["task"]) == ("FAILED", "Policy Validation")
    assert "policy" in final["exception"] and policy_down.url in final["exception"]
