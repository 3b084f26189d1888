"""No answer, page, log line or metric shows a peer's password or a server path."""

from __future__ import annotations

import requests

from tests.support.bundles import make_bundle
from tests.support.procs import free_port

SECRET = "s3cr3t-pw"


def test_peer_passwords_and_server_paths_are_never_shown(ingest, tmp_path):
    dead = free_port()
    stack = ingest("secrets", stage_retries="0", http_retries="0",
                   sections={"policy": {"ingest_url": f"http://svc:{SECRET}@127.0.0.1:{dead}/ingest"}})
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    job_id = stack.upload(path).json()["job_id"]
    failed = stack.wait_complete(job_id)
    assert failed["state"] == "FAILED" and failed["task"] == "Policy Validation", failed
    broken = stack.tus_send(b"not a tar at all" * 100)
    assert stack.wait_complete(broken)["state"] == "FAILED"
    shown = [
        requests.get(stack.url + "/get_state", params={"job_id": job_id, "history": "true"}, timeout=10).text,
        requests.get(stack.url + "/get_state", params={"job_id": broken, "history": "true"}, timeout=10).text,
        requests.get(f"{stack.url}/jobs/{job_id}", timeout=10).text,
        requests.get(f"{stack.url}/jobs/{broken}", timeout=10).text,
        requests.get(f"{stack.url}/jobs", timeout=10).text,
        requests.get(f"{stack.url}/ready", timeout=10).text,
        requests.get(f"{stack.url}/metrics", timeout=10).text,
    ]
    for text in shown:
        assert SECRET not in text
        assert str(stack.data_dir) not in text and str(tmp_path) not in text
    assert "127.0.0.1" in shown[0] or "policy" in shown[0].lower(), "the failure no longer names its peer"
    assert SECRET not in stack.server.log(), "the log holds the password"


def test_a_dead_uniqueid_with_credentials_answers_503_without_them(ingest, tmp_path):
    dead = free_port()
    stack = ingest("uid-secret", http_retries="0",
                   sections={"uniqueid": {"url": f"http://svc:{SECRET}@127.0.0.1:{dead}"}})
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    answer = stack.upload(path)
    assert answer.status_code == 503 and SECRET not in answer.text, answer.text
    assert SECRET not in stack.server.log()
