"""The tus extensions beyond core: creation-with-upload, creation-defer-length, concatenation
(partial uploads sent in parallel, then a final one that creates the job), their refusals, the
bound on partial uploads, their expiry, and a restart between the partials and the final."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import requests

from tests.support.bundles import make_bundle, upload_job
from tests.support.metrics import scrape, value
from tests.support.procs import wait_for

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def _stack(tmp_path, **ingest: str):
    from tests.conftest import embedded_stack

    stack = embedded_stack("tus-ext", tmp_path / "s", **ingest)
    stack.start_server()
    return stack


def _bundle(tmp_path, name: str = "b", size: int = 400_000) -> tuple[bytes, dict[str, bytes]]:
    files = {f"data/{name}/one.bin": os.urandom(size), f"data/{name}/two.txt": b"two\n" * 3000}
    path = tmp_path / f"{name}.tar"
    make_bundle(str(path), files)
    return path.read_bytes(), files


def _archived_ok(stack, job_id: int, files: dict[str, bytes]) -> None:
    state = stack.wait_complete(job_id, 60)
    assert (state["state"], state["task"]) == ("OK", "ingest metadata"), state
    archived = {item["name"]: stack.archived(int(item["_id"])).read_bytes() for item in stack.files(job_id)}
    assert {name: hashlib.sha1(data).hexdigest() for name, data in archived.items()} == \
        {name.rsplit("/", 1)[1]: hashlib.sha1(data).hexdigest() for name, data in files.items()}


def _partial(url: str, data: bytes, user: str = "alice") -> str:
    created = requests.post(url + "/uploads/", timeout=30, headers={
        **TUS, "Upload-Concat": "partial", "Upload-Length": str(len(data)), "X-Http-Authed-User": user})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    sent = requests.patch(location, data=data, timeout=60, headers={**TUS, **OCTETS, "Upload-Offset": "0"})
    assert sent.status_code == 204, sent.text
    return location


def _jobs_seen(stack) -> float:
    samples = scrape(stack.url)
    return sum(count for (name, _labels), count in samples.items()
               if name in ("pacifica_ingest_jobs", "pacifica_ingest_jobs_ended_total"))


def test_creation_with_upload_and_defer_length(tmp_path):
    stack = _stack(tmp_path)
    try:
        options = requests.options(stack.url + "/uploads/", timeout=30).headers["Tus-Extension"].split(",")
        assert {"creation-with-upload", "creation-defer-length", "concatenation"} <= set(options)
        # The whole bundle in the creation request: one request in all.
        body, files = _bundle(tmp_path, "whole")
        created = requests.post(stack.url + "/uploads/", data=body, timeout=60, headers={
            **TUS, **OCTETS, "Upload-Length": str(len(body))})
        assert created.status_code == 201 and created.headers["Upload-Offset"] == str(len(body)), created.text
        _archived_ok(stack, created.json()["job_id"], files)
        # A length given only with the last chunk.
        body, files = _bundle(tmp_path, "deferred")
        created = requests.post(stack.url + "/uploads/", timeout=30, headers={**TUS, "Upload-Defer-Length": "1"})
        assert created.status_code == 201, created.text
        url = created.headers["Location"]
        head = requests.head(url, headers=TUS, timeout=30)
        assert head.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in head.headers
        half = len(body) // 2
        assert requests.patch(url, data=body[:half], timeout=60,
                              headers={**TUS, **OCTETS, "Upload-Offset": "0"}).status_code == 204
        last = requests.patch(url, data=body[half:], timeout=60, headers={
            **TUS, **OCTETS, "Upload-Offset": str(half), "Upload-Length": str(len(body))})
        assert last.status_code == 204, last.text
        _archived_ok(stack, created.json()["job_id"], files)
        # Bytes with the creation must say they are bytes.
        refused = requests.post(stack.url + "/uploads/", data=b"x" * 10, timeout=30,
                                headers={**TUS, "Upload-Length": "10", "Content-Type": "text/plain"})
        assert refused.status_code == 415
    finally:
        stack.stop()


def test_partials_sent_in_parallel_then_a_final_upload(tmp_path):
    stack = _stack(tmp_path)
    try:
        body, files = _bundle(tmp_path, "parallel", 2_000_000)
        cuts = [0, 500_001, 1_000_000, 1_700_003, len(body)]
        locations: dict[int, str] = {}

        def send(index: int) -> None:
            locations[index] = _partial(stack.url, body[cuts[index]:cuts[index + 1]])

        threads = [threading.Thread(target=send, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        head = requests.head(locations[0], headers=TUS, timeout=30)
        assert head.headers["Upload-Concat"] == "partial"
        final = requests.post(stack.url + "/uploads/", timeout=60, headers={
            **TUS, "X-Http-Authed-User": "alice",
            "Upload-Concat": "final;" + " ".join(locations[index] for index in range(4))})
        assert final.status_code == 201, final.text
        assert final.headers["Upload-Offset"] == str(len(body))
        _archived_ok(stack, final.json()["job_id"], files)
        # The partials are used up: naming them again is refused, and creates no job.
        before = _jobs_seen(stack)
        again = requests.post(stack.url + "/uploads/", timeout=30, headers={
            **TUS, "X-Http-Authed-User": "alice", "Upload-Concat": "final;" + locations[0]})
        assert again.status_code == 404 and "partial upload" in again.json()["message"]
        assert _jobs_seen(stack) == before
    finally:
        stack.stop()


def test_a_final_upload_refuses_partials_it_may_not_use(tmp_path):
    stack = _stack(tmp_path, max_partials="2")
    try:
        before = _jobs_seen(stack)
        mine = _partial(stack.url, b"a" * 1024)
        theirs = _partial(stack.url, b"b" * 1024, user="bob")
        unfinished = requests.post(stack.url + "/uploads/", timeout=30, headers={
            **TUS, "Upload-Concat": "partial", "Upload-Length": "4096", "X-Http-Authed-User": "alice"})
        assert unfinished.status_code == 201

        def final(*urls: str):
            return requests.post(stack.url + "/uploads/", timeout=30, headers={
                **TUS, "X-Http-Authed-User": "alice", "Upload-Concat": "final;" + " ".join(urls)})

        assert final(mine, theirs).status_code == 404  # another user's partial is none at all
        assert final(mine, unfinished.headers["Location"]).status_code == 409
        assert final(mine, stack.url + "/uploads/p" + "0" * 32).status_code == 404
        assert final(mine, mine).status_code == 400
        assert final("/elsewhere/42").status_code == 400
        # Alice has two partials open: the bound.
        third = requests.post(stack.url + "/uploads/", timeout=30, headers={
            **TUS, "Upload-Concat": "partial", "Upload-Length": "10", "X-Http-Authed-User": "alice"})
        assert third.status_code == 429 and "max_partials" in third.json()["message"]
        assert _jobs_seen(stack) == before, "a refused final upload created a job"
        assert requests.head(mine, headers=TUS, timeout=30).status_code == 200, "a refusal lost a partial"
    finally:
        stack.stop()


def test_partials_outlive_a_restart_and_expire_when_never_used(tmp_path):
    body, files = _bundle(tmp_path, "restart")
    stack = _stack(tmp_path, upload_expiry=str(4 / 3600))
    try:
        half = len(body) // 2
        first, second = _partial(stack.url, body[:half]), _partial(stack.url, body[half:])
        stack.stop()
        stack.start_server()
        final = requests.post(stack.url + "/uploads/", timeout=60, headers={
            **TUS, "X-Http-Authed-User": "alice", "Upload-Concat": f"final;{first} {second}"})
        assert final.status_code == 201, final.text
        _archived_ok(stack, final.json()["job_id"], files)
        forgotten = _partial(stack.url, b"z" * 2048)
        time.sleep(4.5)
        wait_for(lambda: requests.head(forgotten, headers=TUS, timeout=30).status_code == 404, 30,
                 "the unused partial upload to expire", interval=0.5)
        assert value(scrape(stack.url), "pacifica_ingest_resumable_uploads_open") == 0
    finally:
        stack.stop()


def test_a_second_python_client_sends_four_partials_and_a_final(tmp_path):
    """resumable-upload (PyPI) speaks concatenation: parallel_uploads=4, each chunk checksummed."""
    from resumable_upload.client import TusClient

    stack = _stack(tmp_path)
    try:
        _body, files = _bundle(tmp_path, "python-parallel", 3_000_000)
        client = TusClient(stack.url + "/uploads/", chunk_size=512 * 1024, checksum=True,
                           headers={"X-Http-Authed-User": "alice"})
        url = client.upload_file(str(tmp_path / "python-parallel.tar"), parallel_uploads=4)
        assert stack.server.log().count("4 partial uploads concatenated") == 1
        _archived_ok(stack, upload_job(url), files)
    finally:
        stack.stop()
