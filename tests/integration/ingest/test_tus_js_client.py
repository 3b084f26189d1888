"""The published JavaScript tus client (tus-js-client, run with Node.js) against the service:
parallel partial uploads and a final one, a client killed mid-way that resumes from its stored
fingerprint, a tar streamed from ``tar c`` as it is made (deferred length), and a small bundle sent
with the creation request (one request in all)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.bundles import file_object, make_bundle, transaction_metadata, upload_job
from tests.support.metrics import scrape, value

JS = Path(__file__).resolve().parents[2] / "support" / "js"
NODE = shutil.which("node")
MiB = 1 << 20


@pytest.fixture(scope="module")
def client():
    assert NODE, "Node.js is not installed"
    assert (JS / "node_modules" / "tus-js-client").is_dir(), f"run 'npm ci' in {JS} (tools/test does)"
    return [NODE, str(JS / "upload.mjs")]


@pytest.fixture
def stack(tmp_path):
    from tests.conftest import embedded_stack

    running = embedded_stack("tus-js", tmp_path / "s")
    running.start_server()
    yield running
    running.stop()


def _run(client, options: dict, stdin=None, timeout: float = 300) -> list[dict]:
    result = subprocess.run([*client, json.dumps(options)], stdin=stdin, capture_output=True, text=True,
                            timeout=timeout)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return records


def _job(records: list[dict]) -> int:
    return upload_job(records[-1]["url"])


def _big_bundle(tmp_path, megabytes: int) -> tuple[Path, dict[str, bytes]]:
    files = {f"data/big/part{number}.bin": os.urandom(megabytes * MiB // 3) for number in range(3)}
    path = tmp_path / "big.tar"
    make_bundle(str(path), files)
    return path, files


def _archived_ok(stack, job_id: int, files: dict[str, bytes]) -> None:
    state = stack.wait_complete(job_id, 300)
    assert (state["state"], state["task"]) == ("OK", "ingest metadata"), state
    archived = {item["name"]: hashlib.sha1(stack.archived(int(item["_id"])).read_bytes()).hexdigest()
                for item in stack.files(job_id)}
    assert archived == {name.rsplit("/", 1)[1]: hashlib.sha1(data).hexdigest() for name, data in files.items()}


def test_four_parallel_partials_and_a_final_upload(client, stack, tmp_path):
    path, files = _big_bundle(tmp_path, 300)
    records = _run(client, {"endpoint": stack.url + "/uploads/", "file": str(path), "parallel": 4})
    log = stack.server.log()
    assert log.count("partial upload p") == 4, "the server did not see 4 partial uploads"
    assert log.count("4 partial uploads concatenated") == 1
    _archived_ok(stack, _job(records), files)


def test_killed_mid_way_and_resumed_from_its_fingerprint(client, stack, tmp_path):
    path, files = _big_bundle(tmp_path, 240)
    size, chunk = path.stat().st_size, 8 * MiB
    options = {"endpoint": stack.url + "/uploads/", "file": str(path), "parallel": 4, "chunkSize": chunk,
               "storage": str(tmp_path / "fingerprints.json")}
    first = subprocess.Popen([*client, json.dumps(options)], stdout=subprocess.PIPE, text=True)
    for line in first.stdout:
        record = json.loads(line)
        if record.get("progress", 0) > size * 0.4:
            first.send_signal(signal.SIGKILL)  # the laptop lid closes
            break
    first.wait(30)
    records = _run(client, options)
    assert any("resuming" in record for record in records), "the second run did not resume"
    _archived_ok(stack, _job(records), files)
    received = value(scrape(stack.url), "pacifica_ingest_received_bytes_total", way="tus")
    assert size <= received <= size + 4 * chunk, (received, size)


def test_a_tar_streamed_as_it_is_made_with_a_deferred_length(client, stack, tmp_path):
    root = tmp_path / "instrument"
    files = {f"data/run/{name}": os.urandom(3 * MiB) for name in ("a.bin", "b.bin")}
    metadata = transaction_metadata()
    for arcname, data in files.items():
        (root / arcname).parent.mkdir(parents=True, exist_ok=True)
        (root / arcname).write_bytes(data)
        subdir, _, name = arcname.rpartition("/")
        metadata.append(file_object(subdir, name, data))
    (root / "metadata.txt").write_text(json.dumps(metadata))
    tar = subprocess.Popen(["tar", "c", "-C", str(root), "metadata.txt", "data"], stdout=subprocess.PIPE)
    records = _run(client, {"endpoint": stack.url + "/uploads/", "file": "-", "deferred": True,
                            "chunkSize": MiB}, stdin=tar.stdout)
    assert tar.wait(30) == 0
    _archived_ok(stack, _job(records), files)


def test_a_small_bundle_in_the_creation_request_alone(client, stack, tmp_path):
    path = tmp_path / "small.tar"
    files = {"data/s/one.txt": b"one\n" * 100}
    make_bundle(str(path), files)
    records = _run(client, {"endpoint": stack.url + "/uploads/", "file": str(path), "dataDuringCreation": True})
    _archived_ok(stack, _job(records), files)
    log = stack.server.log()
    assert log.count('"POST /uploads/ HTTP') == 1 and '"PATCH /uploads/' not in log, "more than one request"
