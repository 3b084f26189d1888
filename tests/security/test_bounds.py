"""Bounded resources: a metadata.txt over the cap is refused unread, problem lists and stored
exceptions are bounded, JSON nesting is bounded everywhere, and a hostile bundle keeps the
server (its embedded worker included) small."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import requests

from tests.support.bundles import make_bundle, transaction_metadata, write_tar

DEEP = "[" * 100_000 + "]" * 100_000


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _processes(pid: int) -> list[int]:
    """``pid`` and every process under it (the embedded worker is the server's child)."""
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        found.append(parent)
        for task in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as children:
                pending.extend(int(child) for child in children.read().split())
    return found


def _peaks(stack) -> dict[str, float]:
    """The peak RSS in MiB of the server and of each process under it, by command line."""
    peaks = {}
    for pid in _processes(stack.server.popen.pid):
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            name = cmdline.read().replace(b"\0", b" ").decode()[:80]
        peaks[f"{pid} {name}"] = _peak_rss_mib(pid)
    return peaks


def _assert_every_process_under(stack, limit_mib: float) -> None:
    peaks = _peaks(stack)
    assert len(peaks) >= 2, f"the embedded worker was not found under the server: {peaks}"
    assert max(peaks.values()) < limit_mib, peaks


def test_a_metadata_txt_over_the_cap_fails_unread(ingest, tmp_path):
    stack = ingest("capped")
    path = tmp_path / "huge.tar"
    with tarfile.open(path, "w") as tar:  # 512 MiB of metadata.txt, written without holding it
        info = tarfile.TarInfo("metadata.txt")
        info.size = 512 * 1024 * 1024
        with open("/dev/zero", "rb") as zeros:
            tar.addfile(info, zeros)
    job_id = stack.upload(path).json()["job_id"]
    final = stack.wait_complete(job_id, 120)
    assert (final["state"], final["task"]) == ("FAILED", "load metadata"), final
    assert "metadata_limit" in final["exception"] and "536870912 bytes" in final["exception"]
    _assert_every_process_under(stack, 300)


def _described(number: int) -> dict:
    return {"destinationTable": "Files", "name": f"file-{number:07d}.dat", "subdir": f"data/run{number % 100}",
            "size": 1, "hashtype": "sha1", "hashsum": hashlib.sha1(b"x").hexdigest(),
            "mimetype": "application/octet-stream", "ctime": "2020-01-01T00:00:00", "mtime": "2020-01-01T00:00:00"}


def test_a_metadata_txt_just_under_the_cap_costs_the_worker_a_bounded_amount(ingest, tmp_path):
    """Two bundles whose metadata.txt is just under the 64 MiB cap: 240,000 Files objects for files
    the tar does not hold (refused in 'load metadata'), and 1,000 files with 100,000 key/value
    objects (ingested: the policy, the archive and the embedded metadata service each get the
    whole document). Held as Python objects, such a document cost the worker 350 to 840 MiB."""
    stack = ingest("under-cap")
    hostile = tmp_path / "hostile.tar"
    document = transaction_metadata() + [_described(number) for number in range(240_000)]
    write_tar(str(hostile), [], document)
    del document
    assert 60 * 2**20 < hostile.stat().st_size < 64 * 2**20
    final = stack.wait_complete(stack.upload(hostile).json()["job_id"], 120)
    assert (final["state"], final["task"]) == ("FAILED", "load metadata"), final
    assert "and 239980 more" in final["exception"]
    _assert_every_process_under(stack, 300)
    honest = tmp_path / "honest.tar"
    document = transaction_metadata() + [_described(number) for number in range(1000)]
    document += [{"destinationTable": "TransactionKeyValue", "key": f"frame-{number}", "value": "v" * 560}
                 for number in range(100_000)]
    write_tar(str(honest), [(f"data/run{number % 100}/file-{number:07d}.dat", b"x") for number in range(1000)],
              document)
    del document
    job_id = stack.upload(honest).json()["job_id"]
    final = stack.wait_complete(job_id, 300)
    assert (final["state"], final["files_done"]) == ("OK", 1000), final
    _assert_every_process_under(stack, 300)
    stored = stack.cmd("metadata", "--job-id", str(job_id))
    assert stored.returncode == 0 and stored.stdout.count('"TransactionKeyValue"') == 100_001


def test_a_smaller_cap_is_a_setting(ingest, tmp_path):
    stack = ingest("small-cap", metadata_limit="1 Kb")
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a" * 10}, project="p" * 2000)
    final = stack.wait_complete(stack.upload(path).json()["job_id"])
    assert final["state"] == "FAILED" and "1024 byte limit" in final["exception"], final


def test_problem_lists_and_stored_exceptions_are_bounded(ingest, tmp_path):
    stack = ingest("many")
    path = tmp_path / "many.tar"
    write_tar(str(path), [(f"data/f{number}.txt", b"x") for number in range(20_000)], transaction_metadata())
    job_id = stack.upload(path).json()["job_id"]
    final = stack.wait_complete(job_id, 120)
    assert final["state"] == "FAILED"
    assert "and 19980 more" in final["exception"] and len(final["exception"]) < 64 * 1024, len(final["exception"])
    answer = requests.get(stack.url + "/get_state", params={"job_id": job_id, "history": "true"}, timeout=10)
    assert len(answer.content) < 256 * 1024
    members = [{"name": f"data/f{number}.txt", "size": 1} for number in range(5000)]
    validated = requests.post(stack.url + "/validate", timeout=30,
                              json={"metadata": transaction_metadata(), "files": members})
    assert validated.status_code == 422
    body = validated.json()
    assert len(body["problems"]) == 21 and body["problems"][-1] == "and 4980 more"


def test_json_nesting_is_bounded_everywhere(ingest, tmp_path):
    roots = tmp_path / "roots"
    roots.mkdir()
    stack = ingest("deep", move_roots=str(roots))
    for endpoint in ("/validate", "/move"):
        answer = requests.post(stack.url + endpoint, data=DEEP, timeout=30,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and "nests deeper" in answer.json()["message"], (endpoint, answer.text)
    nested = json.dumps([{"destinationTable": "Transactions.submitter", "value": json.loads("[" * 70 + "]" * 70)}])
    assert requests.post(stack.url + "/validate", data=nested, timeout=30).status_code == 400
    path = tmp_path / "deep.tar"
    write_tar(str(path), [("data/a.txt", b"a")], DEEP)
    final = stack.wait_complete(stack.upload(path).json()["job_id"])
    assert (final["state"], final["task"]) == ("FAILED", "load metadata") and "nests deeper" in final["exception"]


def test_a_large_json_body_and_a_bundle_of_200000_members_stay_bounded(ingest, tmp_path):
    """A 30 MB /validate body costs the server less than its size at its peak (it is kept in a
    file and read one object at a time; built whole, its objects would cost 4 times it), and a
    bundle of 200,000 undescribed members fails
    with a bounded exception while the server and its embedded worker stay under 300 MiB."""
    stack = ingest("big")
    pid = stack.server.popen.pid
    items = [{"destinationTable": "Files", "name": f"f{number}.dat", "subdir": "data/x", "size": 1,
              "hashtype": "sha1", "hashsum": f"{number:040x}", "mimetype": "text/plain"} for number in range(160_000)]
    body = json.dumps(items).encode()
    before = _peak_rss_mib(pid)
    answer = requests.post(stack.url + "/validate", data=body, timeout=300)
    assert answer.status_code == 422
    grown = _peak_rss_mib(pid) - before
    assert grown < len(body) / 2**20, f"{grown:.0f} MiB for a {len(body) / 2**20:.0f} MiB body"
    path = tmp_path / "members.tar"
    with tarfile.open(path, "w") as tar:
        for number in range(200_000):
            tar.addfile(tarfile.TarInfo(f"data/m{number}"))  # empty members: a small tar of many headers
        metadata = json.dumps(transaction_metadata()).encode()
        info = tarfile.TarInfo("metadata.txt")
        info.size = len(metadata)
        tar.addfile(info, io.BytesIO(metadata))
    final = stack.wait_complete(stack.upload(path).json()["job_id"], 300)
    assert final["state"] == "FAILED" and "and 199980 more" in final["exception"], final["exception"][-200:]
    assert len(final["exception"]) < 64 * 1024
    _assert_every_process_under(stack, 300)
