"""The published clients, driven as a scientist drives them, with identities configured: an API
token as pacifica-cli's basic password and as pacifica-uploader's requests ``auth=``, a bearer
header for tuspy and tus-js-client, and pacifica-downloader against cartd with its own token."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import make_stack
from tests.security.conftest import bearer, make_token
from tests.support.bundles import make_bundle, upload_job
from tests.support.procs import BIN, Proc, free_port, run, wait_for
from tests.support.published import published_client_venv, run_published

SEED_LOGON = "dmlb2001"  # user 10 of the published metadata service's seed data: the policy knows them
UPLOADER_JSON = Path(__file__).resolve().parents[1] / "support" / "files" / "uploader.json"
JS = Path(__file__).resolve().parents[1] / "support" / "js"


def test_pacifica_cli_with_a_token_as_its_basic_password(peers, archive, tmp_path):
    stack = make_stack("cli-token", "postgres", "redis", tmp_path / "stack", peers, archive)
    assert stack.cmd("dbsync").returncode == 0
    stack.start_server()
    stack.start_worker()
    try:
        token = make_token(stack, SEED_LOGON)
        other = make_token(stack, "someone-else")
        time.sleep(6)  # the server looks for tokens at most every 5 s
        venv = published_client_venv("pacifica-cli==0.5.2")
        home = tmp_path / "home"
        home.mkdir()
        env = {"HOME": str(home), "UPLOADER_CONFIG": str(UPLOADER_JSON), "PAGER": ""}
        policy = peers.policy.url
        answers = "\n".join([stack.url + "/upload", stack.url + "/get_state", policy + "/uploader",
                             policy + "/ingest", "http://127.0.0.1:9/", policy + "/status/transactions/by_id",
                             "True", "basic", SEED_LOGON, token]) + "\n"
        configured = subprocess.run([str(venv / "bin" / "pacifica-cli"), "configure"], input=answers, text=True,
                                    capture_output=True, env={**os.environ, **env, "PYTHONPATH": ""}, timeout=120,
                                    cwd=str(home))
        assert configured.returncode == 0, configured.stdout + configured.stderr
        run_dir = tmp_path / "run-7"
        run_dir.mkdir()
        (run_dir / "scan.dat").write_bytes(os.urandom(40_000))
        result = run_published(venv, ["pacifica-cli", "upload", "--logon", SEED_LOGON, "--instrument", "54",
                                      "--project", "1234a", "run-7"], env=env, timeout=300, cwd=str(tmp_path))
        assert result.returncode == 0 and "Done." in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
        status = json.loads(result.stdout[result.stdout.rindex("Done.") + len("Done."):])
        assert (status["state"], status["task"]) == ("OK", "ingest metadata"), status
        job_id = int(status["job_id"])
        assert requests.get(stack.url + "/get_state", params={"job_id": job_id}, headers=bearer(token),
                            timeout=10).status_code == 200
        assert requests.get(stack.url + "/get_state", params={"job_id": job_id}, headers=bearer(other),
                            timeout=10).status_code == 404
    finally:
        stack.stop()


@pytest.fixture
def embedded(ingest):
    stack = ingest("clients")
    token = make_token(stack, "alice")
    time.sleep(6)
    stack.headers = bearer(token)
    return stack, token


def test_pacifica_uploader_with_auth_and_the_downloader_from_cartd(embedded, tmp_path):
    from pacifica.downloader import Downloader
    from pacifica.uploader import Uploader

    stack, token = embedded
    path = tmp_path / "b.tar"
    sources = {"data/run/a.bin": os.urandom(100_000), "data/run/b.txt": b"notes\n"}
    make_bundle(str(path), sources)
    uploader = Uploader(upload_url=stack.url + "/upload", status_url=stack.url + "/get_state",
                        auth={"auth": ("alice", token)})
    with open(path, "rb") as body:
        job_id = uploader.upload(body, content_length=path.stat().st_size)
    state = wait_for(lambda: (lambda s: s if s["complete"] else None)(uploader.getstate(job_id)), 60, "the job")
    assert state["state"] == "OK", state
    anonymous = Uploader(upload_url=stack.url + "/upload", status_url=stack.url + "/get_state")
    with pytest.raises(Exception):  # noqa: B017 - the published client raises whatever the 404 body gives it
        anonymous.getstate(job_id)["state"]

    (tmp_path / "none.ini").write_text("")
    env = {"CARTD_CONFIG": str(tmp_path / "none.ini"), "CARTD_CPCONFIG": str(tmp_path / "none.ini"),
           "CARTD_DATA_DIR": str(tmp_path / "cartd"), "INGEST_DATA_DIR": str(stack.data_dir)}
    made = run([str(BIN / "pacifica-cartd-cmd"), "token", "create", "--user", "alice"], env=env, timeout=60)
    cart_token = made.stdout.strip()
    port = free_port()
    server = Proc("cartd-clients", [str(BIN / "pacifica-cartd"), "-p", str(port)], tmp_path / "cartd.log",
                  env=env).start()
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_http(url + "/", 60)
        time.sleep(6)
        files = stack.files(job_id)
        transinfo = {"files": {str(item["_id"]): {"subdir": item["subdir"], "name": item["name"],
                                                  "hashtype": item["hashtype"], "hashsum": item["hashsum"]}
                               for item in files}}
        target = tmp_path / "downloaded"
        target.mkdir()
        Downloader(cart_api_url=url, auth={"auth": ("alice", cart_token)}).transactioninfo(
            str(target), transinfo, filename="data", timeout=60)
        got = {path.name: path.read_bytes() for path in (target / "data").rglob("*") if path.is_file()}
        assert {name: got[name] for name in ("a.bin", "b.txt")} == {
            "a.bin": sources["data/run/a.bin"], "b.txt": sources["data/run/b.txt"]}
    finally:
        server.stop()


def test_tuspy_and_tus_js_client_with_a_bearer_header(embedded, tmp_path):
    from tusclient.client import TusClient

    stack, token = embedded
    path = tmp_path / "b.tar"
    sources = {"data/t/one.bin": os.urandom(700_000)}
    make_bundle(str(path), sources)
    client = TusClient(stack.url + "/uploads/", headers=bearer(token))
    uploader = client.uploader(str(path), chunk_size=200_000)
    uploader.upload()
    job_id = upload_job(uploader.url)
    assert stack.wait_complete(job_id)["state"] == "OK"
    node = subprocess.run(["node", str(JS / "upload.mjs"), json.dumps({
        "endpoint": stack.url + "/uploads/", "file": str(path), "parallel": 2, "headers": bearer(token)})],
        capture_output=True, text=True, timeout=300)
    assert node.returncode == 0, node.stdout[-2000:] + node.stderr[-2000:]
    records = [json.loads(line) for line in node.stdout.splitlines() if line.startswith("{")]
    js_job = upload_job(records[-1]["url"])
    assert stack.wait_complete(js_job)["state"] == "OK"
    for job in (job_id, js_job):
        [item] = stack.files(job)
        assert hashlib.sha1(stack.archived(int(item["_id"])).read_bytes()).hexdigest() == \
            hashlib.sha1(sources["data/t/one.bin"]).hexdigest()
    # An upload made with the token is alice's: without it, even its whole URL finds nothing.
    open_upload = TusClient(stack.url + "/uploads/", headers=bearer(token)).uploader(str(path), chunk_size=1000)
    open_upload.upload_chunk()
    tus = {"Tus-Resumable": "1.0.0"}
    assert requests.head(open_upload.url, headers={**tus, **bearer(token)}, timeout=10).status_code == 200
    assert requests.head(open_upload.url, headers=tus, timeout=10).status_code == 404
