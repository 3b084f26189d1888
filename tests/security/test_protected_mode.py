"""Protected mode: with no identity source configured, a service listening on every address
serves loopback only, and tells anyone else which settings open it."""

from __future__ import annotations

import json
import time

import requests

from tests.security.conftest import make_token
from tests.support.bundles import make_bundle

GET_STATE = """
import json, sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1] if len(sys.argv) > 1 else {url!r}, headers={headers!r})
try:
    answer = urllib.request.urlopen(request, timeout=10)
    print(json.dumps([answer.status, answer.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.read().decode(), dict(error.headers)]))
"""


def remote_get(remote, url: str, headers: dict[str, str] | None = None) -> list:
    ran = remote.python(GET_STATE.format(url=url, headers=headers or {}))
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def test_an_unconfigured_service_on_every_address_serves_loopback_only(ingest, remote, tmp_path):
    stack = ingest("open", address="0.0.0.0")
    assert "protected mode" in stack.server.log()
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    job_id = stack.upload(path).json()["job_id"]  # the quick start, unchanged, from loopback
    assert stack.wait_complete(job_id)["state"] == "OK"
    far = f"http://{remote.host_address}:{stack.port}"
    for url in (f"{far}/get_state?job_id={job_id}", f"{far}/", f"{far}/jobs", f"{far}/metrics",
                f"{far}/uploads/"):
        status, body, *_ = remote_get(remote, url)
        assert status == 403, (url, status, body)
        message = json.loads(body)["message"]
        for setting in ("trusted_proxies", "token create", "issuer", "allow_anonymous"):
            assert setting in message, (setting, message)
    # A forged identity header changes nothing.
    assert remote_get(remote, f"{far}/get_state?job_id={job_id}", {"X-Http-Authed-User": "root"})[0] == 403


def test_a_token_opens_the_door_to_its_holder_only(ingest, remote, tmp_path):
    stack = ingest("tokened", address="0.0.0.0")
    token = make_token(stack, "alice")
    far = f"http://{remote.host_address}:{stack.port}"
    time.sleep(6)  # the server looks for tokens at most every 5 s
    status, body, headers = remote_get(remote, f"{far}/get_state?job_id=1")
    assert status == 401 and "authentication required" in json.loads(body)["message"], body
    assert "Bearer" in headers.get("Www-Authenticate", headers.get("WWW-Authenticate", "")), headers
    status, body, *_ = remote_get(remote, f"{far}/get_state?job_id=1", {"Authorization": f"Bearer {token}"})
    assert status == 404, body  # let in; there is no job 1
    # The identity header is no longer believed, from loopback either.
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    job_id = stack.upload(path, user="alice").json()["job_id"]
    stack.wait_complete(job_id)
    mine = requests.get(f"{stack.url}/get_state", params={"job_id": job_id}, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 404, "the header named alice but the job is root's (the default user)"


def test_allow_anonymous_opens_it_to_everyone_as_the_published_service(ingest, remote):
    stack = ingest("anon", address="0.0.0.0", allow_anonymous="true")
    assert "allow_anonymous is on" in stack.server.log()
    status, body, *_ = remote_get(remote, f"http://{remote.host_address}:{stack.port}/get_state?job_id=1")
    assert status == 404, body


def test_the_shipped_server_conf_listens_on_loopback():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "server.conf").read_text()
    assert "server.socket_host: '127.0.0.1'" in text and "0.0.0.0'" not in text.split("socket_host:")[1].split("\n")[0]
