"""Owners: a job, a resumable upload and its partials belong to whoever made them; anyone else
(not an operator) is answered as if they did not exist, on every verb."""

from __future__ import annotations

import threading
import time

import requests

from tests.security.conftest import bearer, make_token
from tests.support.bundles import make_bundle

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def _users(stack):
    alice, bob = make_token(stack, "alice"), make_token(stack, "bob")
    time.sleep(6)  # the server looks for tokens at most every 5 s
    return bearer(alice), bearer(bob)


def test_another_users_job_does_not_exist_for_them(ingest, tmp_path):
    stack = ingest("jobs")
    alice, bob = _users(stack)
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    job_id = requests.post(stack.url + "/upload", data=path.read_bytes(), headers=alice, timeout=30).json()["job_id"]
    stack.headers = alice
    stack.wait_complete(job_id)
    for params in ({"job_id": job_id}, {"job_id": job_id, "history": "true"}):
        theirs = requests.get(stack.url + "/get_state", params=params, headers=bob, timeout=10)
        missing = requests.get(stack.url + "/get_state", params={**params, "job_id": job_id + 100}, headers=bob,
                               timeout=10)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["message"].replace(str(job_id), "N") == missing.json()["message"].replace(
            str(job_id + 100), "N"), "another user's job is told apart from none"
    assert requests.get(f"{stack.url}/jobs/{job_id}", headers=bob, timeout=10).status_code == 404
    listing = requests.get(f"{stack.url}/jobs", headers=bob, timeout=10).text
    assert f'data-job="{job_id}"' not in listing
    assert f'data-job="{job_id}"' in requests.get(f"{stack.url}/jobs", headers=alice, timeout=10).text


def test_resumable_uploads_are_their_owners_and_their_urls_cannot_be_guessed(ingest):
    stack = ingest("tus")
    alice, bob = _users(stack)
    created = requests.post(stack.url + "/uploads/", headers={**TUS, "Upload-Length": "1000", **alice}, timeout=10)
    assert created.status_code == 201
    location = created.headers["Location"]
    job_id = created.json()["job_id"]
    secret = location.rsplit("/", 1)[1].split("-", 1)[1]
    assert len(secret) == 32 and int(secret, 16) >= 0
    assert requests.head(location, headers={**TUS, **alice}, timeout=10).headers["Upload-Offset"] == "0"
    # Bob, with the whole URL, and anyone guessing from the job id, get the same 404.
    guesses = [location, f"{stack.url}/uploads/{job_id}", f"{stack.url}/uploads/{job_id}-{'0' * 32}"]
    for url in guesses:
        for method in ("HEAD", "PATCH", "DELETE"):
            headers = {**TUS, **bob, **(OCTETS if method == "PATCH" else {}), "Upload-Offset": "0"}
            answer = requests.request(method, url, data=b"x" * 10 if method == "PATCH" else None,
                                      headers=headers, timeout=10)
            assert answer.status_code == 404, (url, method, answer.status_code)
    # Alice herself needs the whole URL too.
    assert requests.head(f"{stack.url}/uploads/{job_id}", headers={**TUS, **alice}, timeout=10).status_code == 404
    assert requests.head(location, headers={**TUS, **alice}, timeout=10).headers["Upload-Offset"] == "0"
    assert requests.delete(location, headers={**TUS, **alice}, timeout=10).status_code == 204


def test_simultaneous_finals_of_the_same_partials_make_one_job(ingest, tmp_path):
    stack = ingest("finals")
    alice, bob = _users(stack)
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.bin": b"z" * 300_000})
    body = path.read_bytes()
    half = len(body) // 2
    parts = []
    for chunk in (body[:half], body[half:]):
        made = requests.post(stack.url + "/uploads/", timeout=10, headers={
            **TUS, **alice, "Upload-Concat": "partial", "Upload-Length": str(len(chunk))})
        assert requests.patch(made.headers["Location"], data=chunk, timeout=30, headers={
            **TUS, **OCTETS, **alice, "Upload-Offset": "0"}).status_code == 204
        parts.append(made.headers["Location"])
    concat = "final;" + " ".join(parts)
    stolen = requests.post(stack.url + "/uploads/", headers={**TUS, **bob, "Upload-Concat": concat}, timeout=30)
    assert stolen.status_code == 404, "bob concatenated alice's partials"
    assert requests.head(parts[0], headers={**TUS, **bob}, timeout=10).status_code == 404
    answers, barrier = [], threading.Barrier(4)

    def final():
        barrier.wait()
        answers.append(requests.post(stack.url + "/uploads/", headers={**TUS, **alice, "Upload-Concat": concat},
                                     timeout=60))

    threads = [threading.Thread(target=final) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(201) == 1 and all(status in (404, 409) for status in statuses if status != 201), statuses
    winner = next(answer for answer in answers if answer.status_code == 201)
    stack.headers = alice
    assert stack.wait_complete(winner.json()["job_id"])["state"] == "OK"
    jobs = requests.get(f"{stack.url}/jobs", headers=alice, timeout=10).text.count("<tr data-job=")
    assert jobs == 1, f"{jobs} jobs from four finals"
