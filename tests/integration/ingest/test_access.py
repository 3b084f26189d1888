"""Who may do what: the auth header only from trusted proxies, no fallback user when none is
configured (401), and move sources only under the configured roots."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import embedded_stack
from tests.support.bundles import make_bundle, move_document


@pytest.fixture
def policy(peers):
    """The published policy, and where its recorded requests stood when the test began."""
    return peers, len(peers.policy.requests)


def start(name, root, peers, **ingest):
    stack = embedded_stack(name, root, **ingest)
    stack.settings["policy"] = {"ingest_url": peers.policy.url + "/ingest"}
    stack.write_config()
    stack.start_server()
    return stack


def users_for(policy, job_id):
    peers, since = policy
    return [user.decode() for user in peers.policy_requests_for(job_id, since=since)]


def test_header_from_a_trusted_proxy_and_no_fallback_user(tmp_path, policy):
    stack = start("trusted", tmp_path / "stack", policy[0], trusted_proxies="127.0.0.1/32", default_user="")
    try:
        path = tmp_path / "b.tar"
        make_bundle(str(path), {"data/a.txt": b"a"})
        job_id = stack.upload(path, user="alice").json()["job_id"]
        stack.headers = {"X-Http-Authed-User": "alice"}  # with a trusted proxy, the job is alice's alone
        assert stack.wait_complete(job_id)["state"] == "OK"
        assert users_for(policy, job_id) == ["alice"]
        refused = requests.post(stack.url + "/upload", data=path.read_bytes(), timeout=10)
        assert refused.status_code == 401
        assert "authentication required" in refused.json()["message"]
        assert stack.state(job_id + 1).status_code == 404, "a refused request created a job"
    finally:
        stack.stop()


def test_header_from_anyone_else_is_ignored_and_moves_stay_under_their_roots(tmp_path, policy):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    stack = start("untrusted", tmp_path / "stack", policy[0], trusted_proxies="10.9.9.9", default_user="guest",
                  move_roots=str(allowed))
    try:
        path = tmp_path / "b.tar"
        make_bundle(str(path), {"data/a.txt": b"a"})
        job_id = stack.upload(path, user="mallory").json()["job_id"]
        assert stack.wait_complete(job_id)["state"] == "OK"
        assert users_for(policy, job_id) == ["guest"], "a header from an untrusted address was believed"

        inside = allowed / "inside.dat"
        inside.write_bytes(b"inside")
        moved = stack.move(move_document({"data/inside.dat": str(inside)})).json()["job_id"]
        assert stack.wait_complete(moved)["state"] == "OK"

        outside = tmp_path / "outside.dat"
        outside.write_bytes(b"secret")
        sneaky = allowed / "link.dat"
        sneaky.symlink_to(outside)
        for source in (outside, sneaky):
            job = stack.move(move_document({"data/x.dat": str(source)})).json()["job_id"]
            final = stack.wait_complete(job)
            assert (final["state"], final["task"]) == ("FAILED", "load metadata"), final
            assert "outside the allowed move roots" in final["exception"]
        assert outside.read_bytes() == b"secret"
    finally:
        stack.stop()
