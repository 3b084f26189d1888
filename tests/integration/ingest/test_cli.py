"""``pacifica-ingest-cmd`` as an operator runs it, on each database."""

from __future__ import annotations

import shutil

import pytest

from tests.support.bundles import make_bundle

pytestmark = pytest.mark.parametrize("cli_stack", ["sqlite", "postgres", "mysql"], indirect=True)

# Job ids the retry test uses, distinct per database (the test peers live for the whole session).
JOB_IDS = {"cli-sqlite": 900001, "cli-postgres": 900002, "cli-mysql": 900003}
OUTSIDE_JOB_IDS = {"cli-sqlite": 900011, "cli-postgres": 900012, "cli-mysql": 900013}
BY_ID_JOB_IDS = {"cli-sqlite": 900021, "cli-postgres": 900022, "cli-mysql": 900023}


def test_dbchk_dbsync_twice_dbchk(cli_stack):
    empty = cli_stack.cmd("dbchk")
    assert empty.returncode == 255
    assert "not safe; run pacifica-ingest-cmd dbsync to create or upgrade the schema" in empty.stdout
    assert cli_stack.cmd("dbchk", "--equal").returncode != 0
    first = cli_stack.cmd("dbsync")
    assert first.returncode == 0, first.stderr
    assert "upgraded to 1.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6" in first.stdout
    second = cli_stack.cmd("dbsync")
    assert second.returncode == 0 and "upgraded" not in second.stdout
    assert cli_stack.cmd("dbchk").returncode == 0
    assert cli_stack.cmd("dbchk", "--equal").returncode == 0


def test_job_fails_a_stuck_job(cli_stack):
    cli_stack.cmd("dbsync")
    assert cli_stack.cmd("job", "--job-id", "77", "--state", "OK", "--task", "ingest files",
                         "--task-percent", "12.5").returncode == 0
    result = cli_stack.cmd("job", "--job-id", "77", "--state", "FAILED", "--task", "ingest files",
                           "--task-percent", "0.0", "--exception", "Failed by administrator")
    assert result.returncode == 0, result.stderr
    check = cli_stack.cmd("job", "--job-id", "78", "--exception", "no such job")
    assert check.returncode == 1 and "does not exist" in check.stderr


def test_retry_reuses_the_file_ids_of_a_failed_attempt(cli_stack, peers, archive, tmp_path):
    cli_stack.cmd("dbsync")
    job = str(JOB_IDS[cli_stack.name])
    volume = cli_stack.volume
    volume.mkdir(parents=True, exist_ok=True)
    files = {"data/r/one.txt": b"one\n" * 1000, "data/r/two.txt": b"two\n" * 10}
    bundle = volume / f"{job}.tar"
    make_bundle(str(bundle), files)
    peers.policy.stop()
    try:
        failed = cli_stack.cmd("retry", "--path", str(bundle), "--job_id", job, "--username", "bob")
    finally:
        peers.policy.start()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED Policy Validation" in failed.stdout
    before = peers.next_id("file")
    kept = tmp_path / "kept.tar"
    shutil.copy(bundle, kept)

    retried = cli_stack.cmd("retry", "--path", str(bundle), "--job_id", job, "--username", "bob")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "OK ingest metadata" in retried.stdout
    assert peers.next_id("file") == before + 1, "retry reserved new file ids"
    document = peers.published.document(int(job))
    stored = {item["name"]: archive.file(item["_id"]).read_bytes()
              for item in document if item.get("destinationTable") == "Files"}
    assert stored == {"one.txt": files["data/r/one.txt"], "two.txt": files["data/r/two.txt"]}
    assert not bundle.exists(), "a completed retry leaves its bundle on the volume"
    assert peers.policy_requests_for(int(job))[-1] == b"bob"


def test_retry_never_deletes_a_bundle_outside_the_volume(cli_stack, peers, archive, tmp_path):
    cli_stack.cmd("dbsync")
    job = OUTSIDE_JOB_IDS[cli_stack.name]
    files = {"data/o/kept.txt": b"an operator's own copy\n" * 100}
    bundle = tmp_path / "operators-copy.tar"
    make_bundle(str(bundle), files)
    original = bundle.read_bytes()
    retried = cli_stack.cmd("retry", "--path", str(bundle), "--job_id", str(job), "--username", "bob")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "OK ingest metadata" in retried.stdout
    stored = [archive.file(item["_id"]).read_bytes() for item in peers.published.document(job)
              if item.get("destinationTable") == "Files"]
    assert stored == [files["data/o/kept.txt"]]
    assert bundle.read_bytes() == original, "retry deleted a file outside the volume"
    leftovers = sorted(path.name for path in cli_stack.volume.glob(f"{job}*"))
    assert leftovers == [], f"the job left {leftovers} on the volume"


def test_retry_of_a_broken_bundle_exits_non_zero(cli_stack, tmp_path):
    cli_stack.cmd("dbsync")
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"garbage" * 100)
    result = cli_stack.cmd("retry", "--path", str(broken), "--job_id", "556")
    assert result.returncode == 1
    assert "FAILED open tar" in result.stdout


def _state(cli_stack, job_id):
    from pacifica.core.database import make_database
    from pacifica.ingest.compat.orm import IngestState

    database = make_database(cli_stack.settings["database"]["peewee_url"])
    try:
        with IngestState.bind_ctx(database):
            return IngestState.get_by_id(job_id)
    finally:
        database.close()


def test_job_and_retry_record_the_operator(cli_stack, tmp_path):
    cli_stack.cmd("dbsync")
    result = cli_stack.cmd("job", "--job-id", "31", "--state", "FAILED", "--task", "ingest files",
                           "--exception", "stuck on a dead archive", "--operator", "ops-alice")
    assert result.returncode == 0, result.stderr
    # get_state shows the operator's words; who did it is in the job's history.
    assert _state(cli_stack, 31).exception == "stuck on a dead archive"
    last = _history(cli_stack, 31)[-1]
    assert last["operator"] == "ops-alice" and last["state"] == "FAILED"
    assert "ops-alice set the job to FAILED 'ingest files'" in last["message"]
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar")
    assert cli_stack.cmd("retry", "--path", str(broken), "--job_id", "32", "--operator", "ops-bob").returncode == 1
    assert _state(cli_stack, 32).state == "FAILED" and _state(cli_stack, 32).exception
    last = _history(cli_stack, 32)[-1]
    assert "ops-bob retried the job" in last["message"] and "failed again" in last["message"]


def _history(cli_stack, job_id):
    import json

    shown = cli_stack.cmd("history", "--job-id", str(job_id), "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_jobs_lists_the_stalled_ones(cli_stack):
    cli_stack.cmd("dbsync")
    cli_stack.cmd("job", "--job-id", "41", "--state", "OK", "--task", "ingest files", "--task-percent", "40")
    cli_stack.cmd("job", "--job-id", "42", "--state", "OK", "--task", "ingest metadata", "--task-percent", "100")
    cli_stack.cmd("job", "--job-id", "43", "--state", "FAILED", "--task", "open tar")
    listed = cli_stack.cmd("jobs", "--stalled", "0")
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[:3] for line in listed.stdout.splitlines()] == [["41", "OK", "ingest files"]]
    assert cli_stack.cmd("jobs", "--stalled", "60").stdout == ""


def test_cleanup_removes_only_expired_failed_bundles(cli_stack):
    import time

    cli_stack.cmd("dbsync")
    cli_stack.settings["ingest"]["failed_retention"] = "0.0002"  # hours: under a second
    cli_stack.write_config()
    volume = cli_stack.volume
    volume.mkdir(parents=True, exist_ok=True)
    for job_id, state in ((51, "FAILED"), (52, "OK")):
        (volume / f"{job_id}.tar").write_bytes(b"bundle")
        cli_stack.cmd("job", "--job-id", str(job_id), "--state", state, "--task", "ingest files")
    time.sleep(1.5)
    result = cli_stack.cmd("cleanup")
    assert result.returncode == 0 and "removed the bundles of 1 failed jobs" in result.stdout
    assert not (volume / "51.tar").exists()
    assert (volume / "52.tar").exists(), "the bundle of a job still running was removed"


def test_a_job_command_that_changes_nothing_says_so_and_writes_nothing(cli_stack):
    cli_stack.cmd("dbsync")
    made = cli_stack.cmd("job", "--job-id", "61", "--state", "OK", "--task", "ingest files", "--task-percent", "40")
    assert made.returncode == 0 and "updated" in made.stdout
    before, events = _state(cli_stack, 61).updated, len(_history(cli_stack, 61))
    for again in (["--state", "OK", "--task", "ingest files", "--task-percent", "40"], []):
        same = cli_stack.cmd("job", "--job_id", "61", *again)
        assert same.returncode == 0, same.stderr
        assert same.stdout.strip() == "job 61: nothing to change (it is OK 'ingest files' 40.0%); nothing was written"
    assert _state(cli_stack, 61).updated == before
    assert len(_history(cli_stack, 61)) == events


def test_retry_by_job_id_finds_the_bundle_on_the_volume(cli_stack):
    cli_stack.cmd("dbsync")
    job = BY_ID_JOB_IDS[cli_stack.name]
    cli_stack.volume.mkdir(parents=True, exist_ok=True)
    make_bundle(str(cli_stack.volume / f"{job}.tar"), {"data/i/found.txt": b"found on the volume\n"})
    cli_stack.cmd("job", "--job-id", str(job), "--state", "FAILED", "--task", "Policy Validation")
    retried = cli_stack.cmd("retry", "--job-id", str(job), "--username", "bob")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"job {job}: running {cli_stack.volume / f'{job}.tar'} as bob" in retried.stdout
    assert "OK ingest metadata" in retried.stdout
    missing = cli_stack.cmd("retry", "--job-id", "999999")
    assert missing.returncode == 2
    assert "job 999999 left no bundle or move document on the volume" in missing.stderr and "--path" in missing.stderr
    neither = cli_stack.cmd("retry")
    assert neither.returncode == 2 and "give --job-id" in neither.stderr


def test_jobs_lists_recent_jobs_with_filters(cli_stack):
    cli_stack.cmd("dbsync")
    cli_stack.cmd("job", "--job-id", "44", "--state", "FAILED", "--task", "open tar")
    cli_stack.cmd("job", "--job-id", "45", "--state", "OK", "--task", "ingest metadata", "--task-percent", "100")
    listed = cli_stack.cmd("jobs")
    assert listed.returncode == 0, listed.stderr
    ids = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert ids[:2] == ["45", "44"], "the jobs changed last come first"
    failed = [line.split("\t")[:2] for line in cli_stack.cmd("jobs", "--state", "FAILED").stdout.splitlines()]
    assert ["44", "FAILED"] in failed and all(state == "FAILED" for _job, state in failed)
    assert len(cli_stack.cmd("jobs", "--limit", "1").stdout.splitlines()) == 1
    nobody = cli_stack.cmd("jobs", "--user", "nobody-at-all")
    assert nobody.returncode == 0 and nobody.stdout == "" and "no jobs match" in nobody.stderr
