"""API tokens: made, listed and revoked with the CLI, sent as Bearer or as the Basic password,
limited to their scopes; the database holds only their digests."""

from __future__ import annotations

import sqlite3
import time

import requests

from tests.security.conftest import bearer, make_token
from tests.support.bundles import make_bundle


def test_tokens_are_created_listed_used_and_revoked(ingest, tmp_path):
    stack = ingest("tokens")
    alice = make_token(stack, "alice", "upload,read", "--note", "beamline 7")
    listed = stack.cmd("token", "list")
    assert "alice" in listed.stdout and "upload,read" in listed.stdout and "beamline 7" in listed.stdout
    assert alice not in listed.stdout
    database = sqlite3.connect(stack.data_dir / "ingest.sqlite3")
    rows = database.execute("SELECT digest, user FROM ingesttoken").fetchall()
    assert rows and all(alice not in digest and len(digest) == 64 for digest, _user in rows)
    time.sleep(6)  # the server looks for tokens at most every 5 s
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    for auth in (bearer(alice), {"Authorization": requests.auth._basic_auth_str("anything", alice)}):
        sent = requests.post(stack.url + "/upload", data=path.read_bytes(), headers=auth, timeout=30)
        assert sent.status_code == 200, sent.text
        job_id = sent.json()["job_id"]
        stack.headers = auth
        assert stack.wait_complete(job_id)["state"] == "OK"
        assert requests.get(stack.url + "/get_state", params={"job_id": job_id}, headers=auth,
                            timeout=10).status_code == 200
        page = requests.get(f"{stack.url}/jobs/{job_id}", headers=auth, timeout=10)
        assert "user alice" in page.text
    assert "unused" not in stack.cmd("token", "list").stdout.splitlines()[0], "last use not recorded"
    token_id = stack.cmd("token", "list", "--json").stdout.split('"id": ')[1].split(",")[0]
    assert stack.cmd("token", "revoke", token_id).returncode == 0
    refused = requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(alice), timeout=10)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    assert "invalid_token" in refused.headers["WWW-Authenticate"]
    assert stack.cmd("token", "revoke", token_id).returncode == 1


def test_scopes_expiry_and_forged_tokens(ingest, tmp_path):
    stack = ingest("scopes")
    reader = make_token(stack, "carol", "read")
    brief = make_token(stack, "dave", "upload,read", "--expires", "2s")
    assert stack.cmd("token", "create", "--user", "x", "--scope", "admin").returncode == 2
    assert stack.cmd("token", "create", "--user", "x", "--expires", "soon").returncode == 2
    time.sleep(6)
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    refused = requests.post(stack.url + "/upload", data=path.read_bytes(), headers=bearer(reader), timeout=30)
    assert refused.status_code == 403 and "'upload' scope" in refused.json()["message"]
    operator_only = requests.post(f"{stack.url}/jobs/1", data={"action": "fail"}, headers=bearer(reader), timeout=10)
    assert operator_only.status_code == 403
    assert requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(brief),
                        timeout=10).status_code == 401, "an expired token was accepted"
    for forged in ("pac_" + "A" * 43, reader[:-1] + ("A" if reader[-1] != "A" else "B"), "pac_", "x" * 5000):
        answer = requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(forged), timeout=10)
        assert answer.status_code == 401, (forged[:20], answer.status_code)
    malformed = requests.get(stack.url + "/get_state", params={"job_id": 1}, timeout=10,
                             headers={"Authorization": "Basic !!!not-base64"})
    assert malformed.status_code == 401 and "WWW-Authenticate" in malformed.headers


def test_operators_by_token_scope_act_on_jobs(ingest, tmp_path):
    stack = ingest("operate")
    operator = make_token(stack, "olga", "read,operate")
    user = make_token(stack, "ulf", "upload,read")
    time.sleep(6)
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    created = requests.post(stack.url + "/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "999",
                                                               **bearer(user)}, timeout=10)
    job_id = created.json()["job_id"]
    listed = requests.get(stack.url + "/jobs", headers=bearer(operator), timeout=10)
    assert f'data-job="{job_id}"' in listed.text and "(operator)" in listed.text
    acted = requests.post(f"{stack.url}/jobs/{job_id}", data={"action": "fail"}, headers=bearer(operator),
                          timeout=10, allow_redirects=False)
    assert acted.status_code == 303, acted.text
    assert stack.history(job_id) == [], "the anonymous loopback user saw another user's job"
    state = requests.get(stack.url + "/get_state", params={"job_id": job_id}, headers=bearer(user), timeout=10)
    assert state.json()["state"] == "FAILED" and "failed by olga" in state.json()["exception"]
