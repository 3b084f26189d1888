"""Many clients at once, and the published service's overwrite bug.

32 uploads run concurrently while get_state is polled; every job completes with its own job id
and file ids. A tar that lists a member twice is refused before it can replace a file another
job archived (the published service reserved ids by counting members, so the duplicate made
the next job's bytes overwrite a finished job's file).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.bundles import file_object, make_bundle, transaction_metadata

UPLOADS = 32


@pytest.fixture(scope="session", params=["embedded", "postgres-rabbitmq"])
def busy_stack(request, stacks):
    return stacks.get(request.param)


def test_32_concurrent_uploads_while_state_is_polled(busy_stack, tmp_path):
    stop = threading.Event()
    poll_errors: list[str] = []

    def poll():
        session = requests.Session()
        while not stop.is_set():
            response = session.get(busy_stack.url + "/get_state", params={"job_id": 1}, timeout=10)
            if response.status_code not in (200, 404):
                poll_errors.append(f"{response.status_code} {response.text[:200]}")

    def upload(number):
        files = {f"data/c{number}/one.bin": os.urandom(50_000), f"data/c{number}/two.txt": f"{number}\n".encode()}
        path = tmp_path / f"b{number}.tar"
        make_bundle(str(path), files)
        response = busy_stack.upload(path)
        assert response.status_code == 200, response.text
        return response.json()["job_id"], files

    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for thread in pollers:
        thread.start()
    try:
        with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            jobs = dict(pool.map(upload, range(UPLOADS)))
        finals = {job_id: busy_stack.wait_complete(job_id, timeout=180) for job_id in jobs}
    finally:
        stop.set()
        for thread in pollers:
            thread.join()
    assert not poll_errors, poll_errors[:3]
    assert len(jobs) == UPLOADS
    assert all((final["state"], final["task"]) == ("OK", "ingest metadata") for final in finals.values()), finals
    file_ids = []
    for job_id, files in jobs.items():
        for item in busy_stack.files(job_id):
            assert busy_stack.archived(item["_id"]).read_bytes() == files[f"data/{item['subdir']}/{item['name']}"]
            file_ids.append(item["_id"])
    assert len(file_ids) == len(set(file_ids)) == 2 * UPLOADS


def test_a_duplicated_member_cannot_overwrite_another_jobs_file(stack, tmp_path):
    first_path = tmp_path / "first.tar"
    make_bundle(str(first_path), {"data/keep/original.txt": b"the first job's bytes\n"})
    first = stack.upload(first_path).json()["job_id"]
    assert stack.wait_complete(first)["state"] == "OK"
    (kept,) = stack.files(first)

    second_path = tmp_path / "second.tar"
    metadata = transaction_metadata() + [file_object("data/x", "a.txt", b"aaaa")]
    with tarfile.open(second_path, "w") as tar:
        for name, data in (("data/x/a.txt", b"aaaa"), ("data/x/a.txt", b"aaaa"),
                           ("metadata.txt", json.dumps(metadata).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    second = stack.upload(second_path).json()["job_id"]
    final = stack.wait_complete(second)
    assert (final["state"], final["task"]) == ("FAILED", "load metadata")
    assert "appears more than once" in final["exception"]
    assert stack.archived(kept["_id"]).read_bytes() == b"the first job's bytes\n"
