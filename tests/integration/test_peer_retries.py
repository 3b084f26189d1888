"""Transient peer failures are retried with backoff; refusals fail at once; a peer that stays
down fails the job, naming it, within a minute with the default settings."""

from __future__ import annotations

import time

from tests.conftest import embedded_stack
from tests.support.bundles import make_bundle
from tests.support.peers import FlakyApp, MetadataApp, PeerServer, PolicyApp
from tests.support.procs import free_port


def upload(stack, tmp_path, project="1234"):
    path = tmp_path / "bundle.tar"
    make_bundle(str(path), {"data/r/a.txt": b"a" * 1000}, project=project)
    response = stack.upload(path)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def test_transient_metadata_errors_are_retried_until_it_answers(tmp_path):
    metadata = MetadataApp()
    flaky = FlakyApp(metadata, failures=2)
    server = PeerServer(flaky).start()
    stack = embedded_stack("flaky", tmp_path / "stack", retry_delay="0.2")
    stack.settings["metadata"] = {"ingest_url": server.url + "/ingest"}
    stack.write_config()
    stack.start_server()
    try:
        job_id = upload(stack, tmp_path)
        final = stack.wait_complete(job_id, timeout=60)
    finally:
        stack.stop()
        server.stop()
    assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final
    assert flaky.requests == 3, "expected two refused attempts and one that succeeded"
    assert metadata.transaction(job_id) is not None


def test_a_refusal_fails_at_once_without_retries(tmp_path):
    policy = PolicyApp()
    server = PeerServer(policy).start()
    stack = embedded_stack("refusal", tmp_path / "stack")
    stack.settings["policy"] = {"ingest_url": server.url + "/ingest"}
    stack.write_config()
    stack.start_server()
    try:
        job_id = upload(stack, tmp_path, project="unknown-project")
        final = stack.wait_complete(job_id, timeout=30)
    finally:
        stack.stop()
        server.stop()
    assert (final["state"], final["task"]) == ("FAILED", "Policy Validation")
    assert len(policy.calls) == 1, "a refusal was retried"


def test_a_peer_that_stays_down_fails_the_job_within_60_seconds_by_default(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/ingest"
    stack = embedded_stack("down", tmp_path / "stack")
    stack.settings["policy"] = {"ingest_url": url}
    stack.write_config()
    stack.start_server()
    try:
        started = time.monotonic()
        job_id = upload(stack, tmp_path)
        retrying = stack.wait_complete_or(job_id, lambda state: "will retry" in state["exception"], timeout=30)
        final = stack.wait_complete(job_id, timeout=90)
        elapsed = time.monotonic() - started
    finally:
        stack.stop()
    assert "will retry" in retrying["exception"] and retrying["state"] == "OK"
    assert (final["state"], final["task"]) == ("FAILED", "Policy Validation")
    assert f"policy service at {url}" in final["exception"]
    assert elapsed < 60, f"FAILED only after {elapsed:.0f}s"
