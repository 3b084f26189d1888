"""What a job tells beyond 0.4.1: its history, its progress in bytes and files, preflight
validation, and a callback when it ends."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import requests

from tests.support.bundles import file_object, make_bundle, transaction_metadata
from tests.support.peers import PeerApp, PeerServer

PUBLISHED_FIELDS = {"job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"}
UPLOAD_STAGES = ["UPLOADING", "open tar", "load metadata", "Policy Validation", "ingest files", "ingest metadata"]


@pytest.fixture(scope="module")
def insight_stack(stacks):
    return stacks.get("postgres-redis")


def _upload(stack, tmp_path, files, **headers):
    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), files)
    response = stack.upload(bundle, **headers)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def test_history_shows_every_stage_in_order(insight_stack, tmp_path):
    job_id = _upload(insight_stack, tmp_path, {"data/a.txt": b"a" * 1000, "data/b/c.txt": b"c"})
    final = insight_stack.wait_complete(job_id)
    assert final["state"] == "OK"
    plain = insight_stack.state(job_id).json()
    assert set(plain) >= PUBLISHED_FIELDS and "history" not in plain
    answer = requests.get(insight_stack.url + "/get_state", params={"job_id": job_id, "history": "true"},
                          timeout=30).json()
    history = answer["history"]
    steps = [(event["task"], event["task_percent"]) for event in history]
    expected = [("UPLOADING", "0.0")] + [(task, percent) for task in UPLOAD_STAGES[1:] for percent in ("0.0", "100.0")]
    assert steps == expected, steps
    assert all(event["state"] == "OK" and event["operator"] is None for event in history)
    assert [event["time"] for event in history] == sorted(event["time"] for event in history)
    # An operator's change is history too, naming them; the CLI prints it all in order.
    changed = insight_stack.cmd("job", "--job-id", str(job_id), "--state", "FAILED", "--operator", "alice")
    assert changed.returncode == 0, changed.stderr
    printed = insight_stack.cmd("history", "--job-id", str(job_id))
    assert printed.returncode == 0, printed.stderr
    lines = [line.split("\t") for line in printed.stdout.splitlines()]
    assert [line[2] for line in lines] == [task for task, _percent in expected] + ["ingest metadata"]
    assert lines[-1][1] == "FAILED" and lines[-1][4] == "alice" and "alice" in lines[-1][5]
    assert insight_stack.cmd("history", "--job-id", "987654321").returncode == 1
    bad = requests.get(insight_stack.url + "/get_state", params={"job_id": job_id, "history": "maybe"}, timeout=30)
    assert bad.status_code == 400 and "history" in bad.json()["message"]


def test_progress_grows_with_bytes_and_ends_at_100(insight_stack, tmp_path):
    # Progress is recorded at most every 0.5 s: the stage must last longer than that for a report
    # in the middle to be seen (320 MB once went to the archive in about half a second).
    files = {f"data/p/f{number}.bin": os.urandom(8 * 1024 * 1024) for number in range(100)}
    total = sum(len(data) for data in files.values())
    job_id = _upload(insight_stack, tmp_path, files)
    samples = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = insight_stack.state(job_id).json()
        if state["task"] == "ingest files":
            samples.append((float(state["task_percent"]), state["bytes_done"], state["files_done"]))
        if state["complete"]:
            break
        time.sleep(0.02)
    assert state["state"] == "OK", state
    assert (state["bytes_done"], state["bytes_total"], state["files_done"], state["files_total"]) == \
        (total, total, len(files), len(files))
    assert samples, "ingest files was never seen"
    assert samples == sorted(samples), f"progress went backwards: {samples}"
    assert any(0 < percent < 100 for percent, _bytes, _files in samples), samples
    history = requests.get(insight_stack.url + "/get_state", params={"job_id": job_id, "history": "1"},
                           timeout=30).json()["history"]
    assert ("ingest files", "100.0") in [(event["task"], event["task_percent"]) for event in history]


def _document(*extra):
    return transaction_metadata() + list(extra)


def test_validate_returns_every_problem_at_once_and_creates_no_job(insight_stack, peers):
    good = file_object("data/x", "a.txt", b"hello")
    before = {mode: peers.next_id(mode) for mode in ("file", "upload_job")}
    valid = requests.post(insight_stack.url + "/validate", timeout=30,
                          json={"metadata": _document(good), "files": [{"name": "data/x/a.txt", "size": 5}]})
    assert valid.status_code == 200, valid.text
    assert valid.json() == {"valid": True, "problems": []}

    broken = [item for item in transaction_metadata("9999") if item["destinationTable"] != "Transactions.instrument"]
    no_hash = {key: value for key, value in file_object("data/x", "b.txt", b"b").items() if key != "hashsum"}
    wrong_size = file_object("data/x", "c.txt", b"ccc")
    answer = requests.post(insight_stack.url + "/validate", timeout=30, json={
        "metadata": broken + [good, no_hash, wrong_size],
        "files": [{"name": "data/x/a.txt", "size": 5}, {"name": "data/x/c.txt", "size": 4},
                  {"name": "data/x/extra.txt", "size": 1}],
    })
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    assert answer.json()["valid"] is False
    expected = ["Transactions.instrument is missing", "missing or non-string hashsum", "metadata says 3 bytes",
                "data/x/extra.txt: in the bundle but not described", "policy:",
                # the published policy's own words for project 9999 and the missing instrument
                "Invalid values for project, instrument"]
    for fragment in expected:
        assert any(fragment in problem for problem in problems), (fragment, problems)
    assert requests.post(insight_stack.url + "/validate", data=b"{not json", timeout=30).status_code == 400
    shape = requests.post(insight_stack.url + "/validate", json={"files": []}, timeout=30)
    assert shape.status_code == 422 and "metadata" in shape.json()["problems"][0]
    after = {mode: peers.next_id(mode) for mode in ("file", "upload_job")}
    assert after == {mode: first + 1 for mode, first in before.items()}, "validate reserved ids"


class Receiver(PeerApp):
    """A callback receiver: records every POST."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.lock = threading.Lock()

    def handle(self, method, path, query, headers, body):
        with self.lock:
            self.posts.append({"path": path, "body": json.loads(body)})
        return 200, {"status": "received"}


def _wait_posts(receiver: Receiver, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.posts) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_callback_is_posted_once_also_when_the_receiver_was_down(insight_stack, tmp_path):
    receiver = Receiver()
    server = PeerServer(receiver).start()
    try:
        done = _upload(insight_stack, tmp_path, {"data/a.txt": b"a"}, **{"X-Pacifica-Callback": server.url + "/done"})
        insight_stack.wait_complete(done)
        _wait_posts(receiver, 1)
        # Down at first: the job ends while nobody listens; the receiver comes back later.
        server.stop()
        bundle = tmp_path / "late.tar"
        make_bundle(str(bundle), {"data/b.txt": b"b"}, project="not-a-project")
        response = requests.post(insight_stack.url + "/upload", data=bundle.read_bytes(), timeout=60,
                                 params={"callback_url": server.url + "/late"})
        late = response.json()["job_id"]
        assert insight_stack.wait_complete(late)["state"] == "FAILED"
        time.sleep(1.0)
        server.start()
        _wait_posts(receiver, 2)
        time.sleep(2.0)  # any duplicate would arrive meanwhile
    finally:
        server.stop()
    assert [post["path"] for post in receiver.posts] == ["/done", "/late"], receiver.posts
    first, second = (post["body"] for post in receiver.posts)
    assert (first["job_id"], first["state"], first["task"], first["complete"]) == (done, "OK", "ingest metadata", True)
    assert (second["job_id"], second["state"], second["complete"]) == (late, "FAILED", True)
    assert "Invalid values for project" in second["exception"]


def test_a_bad_callback_url_is_refused_before_anything_is_stored(insight_stack, tmp_path):
    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/a.txt": b"a"})
    response = insight_stack.upload(bundle, **{"X-Pacifica-Callback": "not a url"})
    assert response.status_code == 400 and "callback URL" in response.json()["message"]
