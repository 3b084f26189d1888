"""The jobs list as a person reads it: it says how it is sorted and sorts by last change, job id
or age; an upload cut off mid-body shows how much had arrived."""

from __future__ import annotations

import re
import socket
import time

import requests

from tests.conftest import embedded_stack
from tests.support.bundles import bundle_start, make_bundle

ALICE = {"X-Http-Authed-User": "alice"}


def _order(page: str) -> list[int]:
    return [int(job) for job in re.findall(r'<tr data-job="(\d+)"', page)]


def _cut_upload(port: int, announced: int, sent: int) -> None:
    begun = bundle_start(announced - 1024)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nX-Http-Authed-User: alice\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     + f"Content-Length: {announced}\r\n\r\n".encode() + begun + b"y" * (sent - len(begun)))
        time.sleep(0.3)


def test_the_list_says_its_order_sorts_three_ways_and_shows_what_a_cut_upload_received(tmp_path):
    stack = embedded_stack("jobs-list", tmp_path / "s", operators="alice")
    stack.start_server()
    try:
        bundle = tmp_path / "b.tar"
        make_bundle(str(bundle), {"data/a.txt": b"a\n"})
        jobs = [stack.upload(bundle, user="alice").json()["job_id"] for _ in range(3)]
        for job in jobs:
            assert stack.wait_complete(job)["state"] == "OK"
        _cut_upload(stack.port, 1_000_000, 100_000)
        cut = jobs[-1] + 1
        assert stack.wait_complete(cut)["task"] == "UPLOADING"
        time.sleep(1.1)  # the database keeps times to the second
        # An operator's change makes the first job the one changed last.
        changed = stack.cmd("job", "--job-id", str(jobs[0]), "--state", "FAILED", "--task", "ingest metadata",
                            "--exception", "by hand")
        assert changed.returncode == 0, changed.stderr

        def listed(**params) -> str:
            answer = requests.get(stack.url + "/jobs", params=params, headers=ALICE, timeout=10)
            assert answer.status_code == 200, answer.text
            return answer.text

        by_change = listed()
        assert "first by last change, newest first" in by_change
        assert _order(by_change)[0] == jobs[0]
        assert _order(listed(sort="id")) == [cut, *reversed(jobs)]
        assert _order(listed(sort="age"))[0] == cut
        assert "first by job id" in listed(sort="id") and "first by age" in listed(sort="age")
        assert _order(listed(sort="nonsense")) == _order(by_change), "an unknown order is the default"
        filtered = listed(sort="id", state="OK")
        assert _order(filtered) == list(reversed(jobs[1:]))
        assert 'href="/jobs?state=OK&amp;sort=age"' in filtered, "the sort links keep the filter"

        row = re.search(rf'<tr data-job="{cut}">.*?</tr>', by_change).group(0)
        assert "97.7 KiB of 976.6 KiB arrived" in row, row
        detail = requests.get(f"{stack.url}/jobs/{cut}", headers=ALICE, timeout=10).text
        assert "(97.7 KiB of 976.6 KiB arrived)" in detail
    finally:
        stack.stop()
