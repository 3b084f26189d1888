"""Quotas against a running service: set with ``pacifica-ingest-cmd quota``, enforced at every door
before a byte is stored (tus creation with the published tuspy client, ``/upload``, ``/validate``,
a final concatenation), again at commit with the real sizes, and shown by ``GET /quota``.

Each stack is the module's own (quotas are the database's), on the embedded defaults and on
PostgreSQL with the published peers and archive interface.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from tests.conftest import own_stack
from tests.support.bundles import make_bundle

TUS = {"Tus-Resumable": "1.0.0"}
GIB = 1024**3


class Sized(io.RawIOBase):
    """A stream that says it holds ``size`` bytes (a creation reads only its length)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self.size - self.position))
        buffer[:count] = b"\0" * count
        self.position += count
        return count


@pytest.fixture(scope="module", params=["embedded", "published"])
def quota_stack(request, tmp_path_factory, peers, archive):
    root = tmp_path_factory.mktemp(f"quotas-{request.param}")
    with own_stack(f"quotas-{request.param}", request.param, root, peers, archive, broker="rabbitmq") as stack:
        yield stack


def _quota(stack, *args: str) -> dict:
    result = stack.cmd("quota", *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _jobs_of(stack, user: str) -> str:
    return stack.cmd("jobs", "--user", user, "--limit", "1000").stdout


def _uploads_on_volume(stack) -> set[str]:
    folder = stack.volume / "uploads"
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def test_a_project_quota_takes_one_600_mb_creation_and_refuses_a_second(quota_stack):
    stack = quota_stack
    [quota] = _quota(stack, "set", "--project", "tus-q", "--bytes", "1GiB")
    assert (quota["max_bytes"], quota["used_bytes"], quota["left_bytes"]) == (GIB, 0, GIB)
    client = TusClient(stack.url + "/uploads/", headers={"X-Http-Authed-User": "tess"})
    first = client.uploader(file_stream=Sized(600_000_000), metadata={"project": "tus-q", "filename": "a.tar"})
    url = first.create_url()
    assert "/uploads/" in url
    before = (_jobs_of(stack, "tess"), _uploads_on_volume(stack))
    second = client.uploader(file_stream=Sized(600_000_000), metadata={"project": "tus-q", "filename": "b.tar"})
    with pytest.raises(TusCommunicationError) as refused:
        second.create_url()
    assert refused.value.status_code == 413
    text = refused.value.response_content.decode()
    assert "the project quota of 'tus-q' has 473741824 bytes left of its 1073741824 byte limit" in text
    assert "600000000 held by uploads in flight); the upload needs 600000000" in text
    assert (_jobs_of(stack, "tess"), _uploads_on_volume(stack)) == before, "a refused creation stored something"
    # The first upload ended (tus termination): what it held is free again.
    assert requests.delete(url, headers={**TUS, "X-Http-Authed-User": "tess"}, timeout=30).status_code == 204
    third = client.uploader(file_stream=Sized(600_000_000), metadata={"project": "tus-q", "filename": "c.tar"})
    requests.delete(third.create_url(), headers={**TUS, "X-Http-Authed-User": "tess"}, timeout=30)


def test_the_fifth_of_five_parallel_creations_of_a_user_limited_to_four_waits(quota_stack):
    stack = quota_stack
    _quota(stack, "set", "--user", "uma", "--uploads", "4")
    answers: list[requests.Response] = []
    barrier = threading.Barrier(5)

    def create() -> None:
        barrier.wait()
        answers.append(requests.post(stack.url + "/uploads/", timeout=60, headers={
            **TUS, "Upload-Length": "10240", "X-Http-Authed-User": "uma"}))

    threads = [threading.Thread(target=create) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer.status_code for answer in answers) == [201, 201, 201, 201, 429]
    [waiting] = [answer for answer in answers if answer.status_code == 429]
    assert int(waiting.headers["Retry-After"]) > 0
    assert "uma has 4 uploads receiving bytes" in waiting.json()["message"]
    [user] = _quota(stack, "show", "--user", "uma")
    assert user["uploading"] == 4
    for answer in answers:
        if answer.status_code == 201:
            requests.delete(answer.headers["Location"], headers={**TUS, "X-Http-Authed-User": "uma"}, timeout=30)
    assert _quota(stack, "show", "--user", "uma")[0]["uploading"] == 0


def test_quota_shows_usage_after_completion_and_after_a_rollback(quota_stack, tmp_path):
    stack = quota_stack
    user = {"X-Http-Authed-User": "quinn"}
    _quota(stack, "set", "--user", "quinn", "--bytes", "100000", "--files", "50")
    files = {"data/q/one.bin": b"1" * 20_000, "data/q/two.bin": b"2" * 30_000}
    make_bundle(str(tmp_path / "good.tar"), files)
    job_id = stack.upload(tmp_path / "good.tar", user="quinn").json()["job_id"]
    assert stack.wait_complete(job_id)["state"] == "OK"
    answer = requests.get(stack.url + "/quota", headers=user, timeout=30).json()
    assert answer["user"] == "quinn"
    mine = {(row["scope"], row["name"]): row for row in answer["quotas"]}
    assert (mine["user", "quinn"]["used_bytes"], mine["user", "quinn"]["used_files"]) == (50_000, 2)
    assert (mine["user", "quinn"]["left_bytes"], mine["user", "quinn"]["held_bytes"]) == (50_000, 0)
    assert mine["project", "1234a"]["max_bytes"] is None and mine["project", "1234a"]["used_bytes"] == 50_000
    # A job whose metadata is refused after its files were archived: they are deleted, and so is
    # what they counted.
    make_bundle(str(tmp_path / "refused.tar"), {"data/q/three.bin": b"3" * 10_000}, mimetype="not a mimetype")
    refused = stack.upload(tmp_path / "refused.tar", user="quinn").json()["job_id"]
    final = stack.wait_complete(refused)
    assert (final["state"], final["task"]) == ("FAILED", "ingest metadata")
    again = requests.get(stack.url + "/quota", headers=user, timeout=30).json()
    row = next(row for row in again["quotas"] if row["scope"] == "user")
    assert (row["used_bytes"], row["used_files"], row["held_bytes"]) == (50_000, 2, 0)


def test_each_door_refuses_before_a_byte_is_stored_and_commit_checks_the_real_sizes(quota_stack, tmp_path):
    stack = quota_stack
    _quota(stack, "set", "--user", "vera", "--bytes", "30000")
    files = {"data/v/big.bin": b"v" * 40_000}
    metadata = make_bundle(str(tmp_path / "big.tar"), files)
    before = _jobs_of(stack, "vera")
    # /upload with its Content-Length: refused unread.
    declared = stack.upload(tmp_path / "big.tar", user="vera")
    assert declared.status_code == 413 and "the user quota of 'vera' has 30000 bytes left" in declared.text
    assert _jobs_of(stack, "vera") == before
    # /validate lists it.
    checked = requests.post(stack.url + "/validate", json=metadata, headers={"X-Http-Authed-User": "vera"},
                            timeout=30)
    assert checked.status_code == 422
    assert any(problem.startswith("quota: the user quota of 'vera'") for problem in checked.json()["problems"])
    # A body without a length (chunked) cannot be judged at the door: the real sizes fail the job
    # in 'load metadata', before anything reaches the archive.
    with open(tmp_path / "big.tar", "rb") as bundle:
        chunked = requests.post(stack.url + "/upload", data=iter(lambda: bundle.read(65536), b""), timeout=60,
                                headers={"Content-Type": "application/octet-stream", "X-Http-Authed-User": "vera"})
    assert chunked.status_code == 200, chunked.text
    final = stack.wait_complete(chunked.json()["job_id"])
    assert (final["state"], final["task"]) == ("FAILED", "load metadata")
    assert "the user quota of 'vera' has 30000 bytes left" in final["exception"]
    assert _quota(stack, "show", "--user", "vera")[0]["used_bytes"] == 0
    # A final concatenation of partials over the quota: refused, and the partials stay usable.
    parts = []
    for piece in (b"a" * 20_000, b"b" * 20_000):
        created = requests.post(stack.url + "/uploads/", data=piece, timeout=30, headers={
            **TUS, "Upload-Concat": "partial", "Upload-Length": str(len(piece)), "X-Http-Authed-User": "vera",
            "Content-Type": "application/offset+octet-stream"})
        assert created.status_code == 201, created.text
        parts.append(created.headers["Location"])
    final_upload = requests.post(stack.url + "/uploads/", timeout=30, headers={
        **TUS, "Upload-Concat": "final;" + " ".join(parts), "X-Http-Authed-User": "vera"})
    assert final_upload.status_code == 413 and "needs 40000" in final_upload.text
    for part in parts:
        assert requests.head(part, headers={**TUS, "X-Http-Authed-User": "vera"}, timeout=30).status_code == 200
        requests.delete(part, headers={**TUS, "X-Http-Authed-User": "vera"}, timeout=30)
