"""Carts from a tape-backed archive: every status, progress, deletion while staging, retrying a failed
file alone, and a download resumed with HTTP Range (by curl)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import time

import pytest
import requests

from tests.support.cartd import cart_service
from tests.support.procs import wait_for
from tests.support.tape import TapeArchive

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tape():
    archive = TapeArchive().start()
    yield archive
    archive.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, tape):
    # Its own queue, as beside an ingest service on the same broker.
    with cart_service(tmp_path_factory.mktemp("cartd-tape"), tape.url, "pacifica_cartd_tape",
                      queue="cartd") as running:
        yield running


@pytest.fixture(autouse=True)
def robot(tape):
    tape.recalls.clear()
    tape.pace = 0.0
    yield tape
    tape.held.clear()
    tape.recalls.set()


def _put(tape: TapeArchive, prefix: str, sizes: list[int]) -> tuple[list[dict], dict[str, bytes]]:
    fileids, contents = [], {}
    for number, size in enumerate(sizes):
        file_id, data = f"{prefix}-{number}", os.urandom(size)
        tape.add(file_id, data)
        path = f"run/{number % 2}/{file_id}.dat"
        fileids.append({"id": file_id, "path": path, "hashtype": "sha1", "hashsum": hashlib.sha1(data).hexdigest()})
        contents[path] = data
    return fileids, contents


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def _counts(response: requests.Response) -> tuple[int, ...]:
    return tuple(int(response.headers[f"X-Pacifica-{name}"])
                 for name in ("Bytes-Staged", "Bytes-Total", "Files-Staged", "Files-Total"))


def test_staging_bundling_ready_with_bytes_staged_of_total(service, tape):
    uid = f"tape-{time.time_ns()}"
    fileids, contents = _put(tape, uid, [24 * MiB, 24 * MiB, 24 * MiB + 5])
    total = sum(len(data) for data in contents.values())
    body = {"fileids": fileids, "bundle": True}
    assert requests.post(f"{service.url}/{uid}", json=body, timeout=30).status_code == 201
    waiting = wait_for(lambda: (r := service.head(uid)).headers.get("X-Pacifica-Files-Total") and r, 60, "progress")
    assert waiting.headers["X-Pacifica-Status"] == "staging" and waiting.headers["X-Pacifica-Message"] == ""
    assert _counts(waiting) == (0, total, 0, 3)
    # Every file is asked for before any is pulled: the robot recalls them together.
    wait_for(lambda: all(tape.calls[("POST", item["id"])] == 1 for item in fileids), 30, "all files staged")
    time.sleep(0.5)
    assert not any(tape.calls[("GET", item["id"])] for item in fileids)
    assert service.head(uid).headers["X-Pacifica-Status"] == "staging"

    tape.pace = 0.002
    tape.recalls.set()
    seen = []
    while True:
        head = service.head(uid)
        seen.append((head.headers["X-Pacifica-Status"], *_counts(head)))
        if seen[-1][0] in ("ready", "error"):
            break
        time.sleep(0.02)
    statuses = [status for index, (status, *_rest) in enumerate(seen) if index == 0 or seen[index - 1][0] != status]
    assert statuses == ["staging", "bundling", "ready"], statuses
    staged = [row[1] for row in seen]
    assert staged == sorted(staged), "bytes staged went backwards"
    assert any(0 < value < total for value in staged), "no progress was seen during the pull"
    assert seen[-1][1:] == (total, total, 3, 3)

    download = requests.get(f"{service.url}/{uid}", params={"filename": "run.tar"}, timeout=60)
    assert download.status_code == 200 and int(download.headers["Content-Length"]) == len(download.content)
    assert download.headers["Content-Disposition"] == 'attachment; filename="run.tar"'
    members = _members(download.content)
    manifest = members.pop(f"{uid}/manifest-sha1.txt").decode()
    assert members == {f"{uid}/{path}": data for path, data in contents.items()}
    assert sorted(manifest.splitlines()) == sorted(f"{item['hashsum']}  {item['path']}" for item in fileids)
    tail = requests.get(f"{service.url}/{uid}", headers={"Range": "bytes=-1000"}, timeout=60)
    assert tail.status_code == 206 and tail.content == download.content[-1000:]
    assert requests.delete(f"{service.url}/{uid}", timeout=30).status_code == 200
    assert _no_cart_files(service, uid)


def _no_cart_files(service, uid: str) -> bool:
    return not any(uid in path.name for path in service.volume.rglob("*"))


def test_delete_while_on_tape_and_while_pulling(service, tape):
    uid = f"del-{time.time_ns()}"
    fileids, _contents = _put(tape, uid, [MiB, MiB])
    assert requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=30).status_code == 201
    wait_for(lambda: all(tape.calls[("POST", item["id"])] for item in fileids), 30, "files staged")
    deleted = requests.delete(f"{service.url}/{uid}", timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"message": "Cart Deleted Successfully"}
    assert service.head(uid).status_code == 404
    assert requests.get(f"{service.url}/{uid}", timeout=30).status_code == 404
    tape.recalls.set()
    time.sleep(2)
    assert not any(tape.calls[("GET", item["id"])] for item in fileids)
    assert _no_cart_files(service, uid)

    # Deleted halfway through a slow pull: the pull stops, nothing is left on the volume.
    uid = f"del-pull-{time.time_ns()}"
    fileids, _contents = _put(tape, uid, [16 * MiB])
    tape.pace = 0.02
    assert requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=30).status_code == 201
    wait_for(lambda: int(service.head(uid).headers.get("X-Pacifica-Bytes-Staged") or 0) > 0, 60, "pull to start")
    assert requests.delete(f"{service.url}/{uid}", timeout=30).status_code == 200
    wait_for(lambda: _no_cart_files(service, uid), 30, "the deleted cart's files to go")
    time.sleep(1)
    assert _no_cart_files(service, uid)
    # The worker is still there for the next cart.
    tape.pace = 0.0
    uid = f"after-{time.time_ns()}"
    fileids, _contents = _put(tape, uid, [1000])
    assert requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=30).status_code == 201
    assert service.wait_status(uid, {"ready", "error"}).headers["X-Pacifica-Status"] == "ready"


def test_a_failed_file_is_retried_alone_and_waits_for_a_free_worker(service, tape):
    tape.recalls.set()
    uid = f"retry-{time.time_ns()}"
    fileids, contents = _put(tape, uid, [300_000, 200_000])
    good, bad = fileids
    tape.add(bad["id"], b"corrupted on tape")
    tape.recalled.add(bad["id"])
    assert requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=30).status_code == 201
    failed = service.wait_status(uid, {"error", "ready"})
    assert failed.headers["X-Pacifica-Status"] == "error"
    assert bad["id"] in failed.headers["X-Pacifica-Message"] and good["id"] not in failed.headers["X-Pacifica-Message"]
    assert _counts(failed)[2:] == (1, 2)
    not_failed = requests.post(f"{service.url}/{uid}-none", params={"retry": "true"}, timeout=30)
    assert not_failed.status_code == 404 and "No cart" in not_failed.json()["message"]

    # The archive's copy is repaired; both workers are busy with carts waiting on the robot.
    tape.add(bad["id"], contents[bad["path"]])
    blockers = []
    for number in range(2):
        blocker = f"block-{number}-{time.time_ns()}"
        ids, _data = _put(tape, blocker, [10])
        tape.held.add(ids[0]["id"])
        assert requests.post(f"{service.url}/{blocker}", json={"fileids": ids}, timeout=30).status_code == 201
        wait_for(lambda ids=ids: tape.calls[("POST", ids[0]["id"])], 30, "blocker to be staging")
        blockers.append(blocker)
    retried = requests.post(f"{service.url}/{uid}", params={"retry": "true"}, timeout=30)
    assert retried.status_code == 202 and retried.json() == {"message": "Cart retry has begun"}
    again = requests.post(f"{service.url}/{uid}", params={"retry": "true"}, timeout=30)
    assert again.status_code == 409 and "only a cart in error" in again.json()["message"]
    for _ in range(10):
        assert service.head(uid).headers["X-Pacifica-Status"] == "waiting"
        time.sleep(0.1)
    tape.held.clear()
    assert service.wait_status(uid, {"ready", "error"}).headers["X-Pacifica-Status"] == "ready"
    assert tape.calls[("GET", good["id"])] == 1, "the file already staged was pulled again"
    assert tape.calls[("GET", bad["id"])] == 2
    members = _members(requests.get(f"{service.url}/{uid}", params={"filename": "r.tar"}, timeout=60).content)
    assert {name: data for name, data in members.items() if "manifest" not in name} == \
        {f"r/{path}": data for path, data in contents.items()}
    for blocker in blockers:
        assert service.wait_status(blocker, {"ready", "error"}).headers["X-Pacifica-Status"] == "ready"


def test_an_interrupted_download_resumes_with_range(service, tape, tmp_path):
    tape.recalls.set()
    uid = f"range-{time.time_ns()}"
    fileids, contents = _put(tape, uid, [2 * MiB + 3, 3 * MiB + 1])
    assert requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=30).status_code == 201
    assert service.wait_status(uid, {"ready", "error"}).headers["X-Pacifica-Status"] == "ready"
    url = f"{service.url}/{uid}?filename=big.tar"
    whole = requests.get(url, timeout=60)
    size, etag = len(whole.content), whole.headers["ETag"]
    assert int(whole.headers["Content-Length"]) == size and whole.headers["Accept-Ranges"] == "bytes"
    assert {name: data for name, data in _members(whole.content).items() if "manifest" not in name} == \
        {f"big/{path}": data for path, data in contents.items()}

    # curl, cut off after a million bytes, picks up where it stopped.
    partial = tmp_path / "big.tar"
    partial.write_bytes(whole.content[:1_000_000])
    subprocess.run(["curl", "-sS", "-f", "-C", "-", "-o", str(partial), url], check=True, timeout=60)
    assert partial.read_bytes() == whole.content

    resumed = requests.get(url, headers={"Range": "bytes=1000000-", "If-Range": etag}, timeout=60)
    assert resumed.status_code == 206
    assert resumed.headers["Content-Range"] == f"bytes 1000000-{size - 1}/{size}"
    assert int(resumed.headers["Content-Length"]) == size - 1_000_000
    assert whole.content[:1_000_000] + resumed.content == whole.content
    middle = requests.get(url, headers={"Range": "bytes=512-1535"}, timeout=60)
    assert middle.status_code == 206 and middle.content == whole.content[512:1536]
    changed = requests.get(url, headers={"Range": "bytes=1000000-", "If-Range": '"other"'}, timeout=60)
    assert changed.status_code == 200 and changed.content == whole.content
    past = requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=60)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"
    assert "past the end" in past.json()["message"]
    # Without a filename the default name, and so the bytes, are the same every time.
    first, second = (requests.get(f"{service.url}/{uid}", headers={"Range": "bytes=0-0"}, timeout=60)
                     for _ in range(2))
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["Content-Disposition"] == second.headers["Content-Disposition"]
    assert first.headers["Content-Disposition"].startswith('attachment; filename="data_')


def test_a_worker_killed_mid_cart_leaves_it_to_the_next_keeping_what_was_staged(service, tape):
    import signal

    tape.recalls.set()
    uid = f"crash-{time.time_ns()}"
    fileids, contents = _put(tape, uid, [400_000, 300_000])
    first, second = fileids
    tape.held.add(second["id"])
    assert requests.post(f"{service.url}/{uid}", json={"fileids": fileids}, timeout=30).status_code == 201
    wait_for(lambda: service.head(uid).headers.get("X-Pacifica-Files-Staged") == "1", 60, "the first file")
    service.worker.kill(signal.SIGKILL, group=True)
    assert service.head(uid).headers["X-Pacifica-Status"] == "staging"
    tape.held.clear()
    service.worker.start().wait_log("ready", 60)
    assert service.wait_status(uid, {"ready", "error"}).headers["X-Pacifica-Status"] == "ready"
    assert tape.calls[("GET", first["id"])] == 1, "the file staged before the crash was pulled again"
    members = _members(requests.get(f"{service.url}/{uid}", params={"filename": "c.tar"}, timeout=60).content)
    assert {name: data for name, data in members.items() if "manifest" not in name} == \
        {f"c/{path}": data for path, data in contents.items()}
