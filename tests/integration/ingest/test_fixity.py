"""Fixity audits of what the service archived, against the published archive interface (its
CherryPy deployment, default settings, the published peers) and against the embedded archive.

Three jobs are uploaded with the published pacifica-uploader; one byte of a job-2 file is
flipped where the archive keeps it. A cart of that file ends in error and marks it failed in the
record; ``pacifica-ingest-cmd fixity --all`` then exits 1 naming the path and both digests, the
other jobs are found whole, and the jobs page and ``/metrics`` say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import requests

from pacifica.core.http import make_session
from pacifica.ingest.peers.archive import HttpArchive
from pacifica.ingest.peers.metadata import HttpMetadata
from tests.conftest import embedded_stack, make_stack, own_stack
from tests.support import services
from tests.support.bundles import file_object, transaction_metadata
from tests.support.cartd import cart_service
from tests.support.metrics import scrape, value
from tests.support.procs import run, wait_for
from tests.support.uploader import upload_with_uploader

FILE_SIZE = 300_000


@pytest.fixture(scope="module", params=["published", "embedded"])
def audited(request, tmp_path_factory, peers, archive):
    """A stack of its own (the audit reads everything in its record), three jobs uploaded with
    pacifica-uploader, and the sources of each job's files."""
    root = tmp_path_factory.mktemp(f"fixity-{request.param}")
    with own_stack(f"fixity-{request.param}", request.param, root, peers, archive) as stack:
        jobs = {}
        for number in (1, 2, 3):
            sources = {f"data/run-{number}/{name}.dat": os.urandom(FILE_SIZE) for name in ("a", "b")}
            job_id, state = upload_with_uploader(stack.url, sources, root / f"job{number}")
            assert state["state"] == "OK" and state["complete"], state
            jobs[number] = (job_id, sources)
        yield stack, jobs, request.param


def _recorded_files(stack, job_id):
    """The job's files as its metadata recorded them: {path in the bundle: (file id, sha1)}."""
    return {f"data/{item['subdir']}/{item['name']}".replace("//", "/"): (item["_id"], item["hashsum"])
            for item in stack.files(job_id)}


def _flip_a_byte(path):
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0x01]))


def _ingest_database(stack):
    return stack.settings["database"]["peewee_url"] if "database" in stack.settings else \
        f"sqliteext:///{stack.data_dir / 'ingest.sqlite3'}"


def test_an_audit_finds_the_one_flipped_byte_and_a_cart_of_it_fails_too(audited, tmp_path):
    stack, jobs, kind = audited
    job1, job2, job3 = (jobs[number][0] for number in (1, 2, 3))
    files = _recorded_files(stack, job2)
    path, (file_id, recorded) = min(files.items())
    assert recorded == hashlib.sha1(jobs[2][1][path]).hexdigest()
    _flip_a_byte(stack.archived(file_id))
    flipped = hashlib.sha1(stack.archived(file_id).read_bytes()).hexdigest()

    started = time.monotonic()
    result = stack.cmd("fixity", "--all", "--json", "--rate", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["checked"], report["passed"], report["failed"], report["ok"]) == (6, 5, 1, False)
    assert report["bytes"] == 5 * FILE_SIZE
    [failure] = report["failures"]
    assert (failure["job_id"], failure["file_id"], failure["path"]) == (job2, file_id, path)
    assert (failure["algorithm"], failure["expected"], failure["actual"]) == ("sha1", recorded, flipped)
    assert time.monotonic() - started < 60

    history = {job_id: stack.history(job_id)[-1]["message"] for job_id in (job1, job2, job3)}
    assert history[job1] == history[job3] == "fixity: 2 files checked, all whole (sha1 and size)"
    assert history[job2].startswith(f"fixity FAILED: 1 of 2 files checked: {path} (file {file_id}): sha1 is {flipped}")

    samples = scrape(stack.url)
    assert value(samples, "pacifica_ingest_fixity_checked_files_total", outcome="ok") == 5
    assert value(samples, "pacifica_ingest_fixity_checked_files_total", outcome="failed") == 1
    assert value(samples, "pacifica_ingest_fixity_failures_total") == 1
    assert value(samples, "pacifica_ingest_fixity_failing_files") == 1
    assert value(samples, "pacifica_ingest_fixity_checked_bytes_total") == 5 * FILE_SIZE

    page = requests.get(f"{stack.url}/jobs", timeout=30, headers=stack.headers).text
    rows = {line.split('"')[1]: line for line in page.split("<tr data-job=")[1:]}
    assert "fixity failed" in rows[str(job2)] and "fixity failed" not in rows[str(job1)] + rows[str(job3)]
    detail = requests.get(f"{stack.url}/jobs/{job2}", timeout=30, headers=stack.headers).text
    assert "Fixity failed" in detail and recorded in detail and flipped in detail
    assert "<h2>Fixity checks</h2>" in detail and detail.count(">ok</td>") == 1

    # A cart of the file: it ends in error naming the file, and adds its finding to the record.
    archive_url = stack.archive.url if stack.archive is not None else f"file://{stack.data_dir / 'archive'}"
    (tmp_path / "cartd").mkdir()
    with cart_service(tmp_path / "cartd", archive_url, f"pacifica_cartd_fixity_{kind}",
                      ingest_database=_ingest_database(stack)) as cartd:
        uid = f"fixity-{time.time_ns()}"
        created = requests.post(f"{cartd.url}/{uid}", timeout=30, json={"fileids": [
            {"id": str(file_id), "path": path, "hashtype": "sha1", "hashsum": recorded}]})
        assert created.status_code == 201, created.text
        ended = cartd.wait_status(uid, {"ready", "error"})
        assert ended.headers["X-Pacifica-Status"] == "error"
        assert str(file_id) in ended.headers["X-Pacifica-Message"] and flipped in ended.headers["X-Pacifica-Message"]
    after_cart = scrape(stack.url)
    assert value(after_cart, "pacifica_ingest_fixity_failures_total") == 2
    assert value(after_cart, "pacifica_ingest_fixity_failing_files") == 1


def test_a_rate_holds_an_audit_and_a_second_run_inside_the_window_checks_nothing(audited):
    stack, jobs, _kind = audited
    job1 = jobs[1][0]
    rate = 200_000  # bytes a second: job 1's 600,000 bytes take at least 3 s
    started = time.monotonic()
    result = stack.cmd("fixity", "--job-id", str(job1), "--rate", "200KB/s", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["checked"], report["bytes"]) == (2, 2 * FILE_SIZE)
    assert report["seconds"] >= 2 * FILE_SIZE / rate and elapsed >= 2 * FILE_SIZE / rate

    # Every file was found whole (or failed) within the last minutes: none is due within an hour.
    again = stack.cmd("fixity", "--older-than", "1h")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("fixity: checked 0 files (0 bytes)")


def test_a_scheduled_audit_checks_what_is_due_once_per_window(tmp_path):
    """The duties queue the files not found whole for ``max_age`` as Celery tasks; the embedded
    worker checks them; files found whole within the window are not checked again."""
    stack = embedded_stack("fixity-schedule", tmp_path)
    stack.settings["fixity"] = {"interval": "1s", "max_age": "6s", "rate": "0"}
    stack.write_config()
    stack.start_server()
    try:
        sources = {"data/s/one.dat": os.urandom(50_000), "data/s/two.dat": os.urandom(60_000)}
        job_id, state = upload_with_uploader(stack.url, sources, tmp_path / "job")
        assert state["complete"] and state["state"] == "OK"

        def checks():
            return [event["message"] for event in stack.history(job_id) if event["message"].startswith("fixity")]

        first = wait_for(lambda: checks() or None, 40, "the first scheduled audit")
        assert first == ["fixity: 2 files checked, all whole (sha1 and size)"]
        time.sleep(3)  # inside the 6 s window: nothing is due
        assert len(checks()) == 1
        wait_for(lambda: len(checks()) >= 2 or None, 30, "the audit of the next window")
        samples = scrape(stack.url)
        assert value(samples, "pacifica_ingest_fixity_checked_files_total", outcome="ok") >= 4
        assert value(samples, "pacifica_ingest_fixity_oldest_verification_age_seconds") < 60
    finally:
        stack.stop()


LEGACY_COMPLETED = """
import sys
from pacifica.ingest.orm import update_state
update_state(int(sys.argv[1]), 'OK', 'ingest metadata', 100)
"""


def test_a_database_of_0_4_1_gains_the_record_by_dbsync_and_backfill(legacy_ingest, peers, archive, tmp_path):
    """A job the published 0.4.1 completed: its state row written by 0.4.1's own code, its
    metadata in the published metadata service and its files in the published archive interface,
    as 0.4.1 left them. After ``dbsync``, ``fixity --backfill`` records its files from the
    metadata service, and an audit finds them whole."""
    url = services.create_postgres_db("pacifica_ingest_backfill")
    legacy_env = {"PEEWEE_URL": url, "INGEST_CONFIG": str(tmp_path / "none.ini"), "PYTHONPATH": ""}
    assert run([str(legacy_ingest / "bin" / "pacifica-ingest-cmd"), "dbsync"], env=legacy_env,
               cwd=tmp_path).returncode == 0
    job_id = peers.next_id("upload_job")
    first_file = peers.next_id("file")
    second_file = peers.next_id("file")
    run([str(legacy_ingest / "bin" / "python"), "-c", LEGACY_COMPLETED, str(job_id)], env=legacy_env, check=True,
        cwd=tmp_path)
    contents = {first_file: os.urandom(70_000), second_file: os.urandom(80_000)}
    session = make_session(30, 1)
    for file_id, data in contents.items():
        HttpArchive(archive.url, session).put(file_id, [data], len(data), 1_600_000_000)
    HttpMetadata(peers.metadata.url + "/ingest", session).ingest([
        *transaction_metadata(),
        *[file_object("raw", f"{file_id}.bin", data) | {"_id": file_id} for file_id, data in contents.items()],
        {"destinationTable": "Transactions._id", "value": job_id}])

    stack = make_stack("fixity-backfill", "postgres", "redis", tmp_path / "stack", peers, archive)
    stack.settings["database"]["peewee_url"] = url
    stack.write_config()
    synced = stack.cmd("dbsync")
    assert synced.returncode == 0 and "2.5" in synced.stdout, synced.stdout + synced.stderr
    filled = stack.cmd("fixity", "--backfill")
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert filled.stdout.strip() == "recorded 2 files of 1 jobs archived before the record"
    assert stack.cmd("fixity", "--backfill").stdout.strip() == "recorded 0 files of 0 jobs archived before the record"
    audit = stack.cmd("fixity", "--job-id", str(job_id), "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert (report["checked"], report["passed"], report["bytes"]) == (2, 2, 150_000)
