"""What an operator may do to a job (the jobs page and the CLI share these), and that each is
recorded in the job's history with who did it."""

from __future__ import annotations

import pytest

from pacifica.ingest.common import states
from pacifica.ingest.db import migrations, models
from pacifica.ingest.jobs import actions, record
from pacifica.ingest.volume.spool import Spool


@pytest.fixture
def jobs(database):
    migrations.upgrade(database)
    record.upload_whole(1, 10)                                   # running
    record.by_operator(2, states.FAILED, states.INGEST_FILES, 0, operator="test", exception="disk full")
    return database


def test_an_unfinished_job_is_failed_by_an_operator(jobs):
    actions.fail(1, "olivia", "the jobs page")
    row = models.read_state(1)
    assert (row.state, row.task, row.complete) == (states.FAILED, states.UPLOADING, True)
    last = models.read_history(1)[-1]
    assert (last.operator, last.message) == ("olivia", "failed by olivia from the jobs page")


@pytest.mark.parametrize(("action", "job_id", "status"), [
    ("fail", 2, 409), ("fail", 99, 404), ("retry", 1, 409), ("retry", 99, 404), ("retry", 2, 409),
])
def test_an_action_that_does_not_apply_is_refused_with_its_status(jobs, tmp_path, action, job_id, status):
    spool = Spool(str(tmp_path / "volume"), 4096)  # job 2's bundle is not on it: retry is refused
    with pytest.raises(actions.ActionRefused) as refused:
        actions.fail(job_id, "olivia", "here") if action == "fail" else actions.retry(job_id, "olivia", "here", spool)
    assert refused.value.status == status


def test_a_state_set_by_hand_keeps_what_is_not_given(jobs):
    note = actions.set_state(2, "olivia", task=states.INGEST_METADATA)
    row = models.read_state(2)
    assert (row.state, row.task, row.exception) == (states.FAILED, states.INGEST_METADATA, "disk full")
    assert "olivia set the job to FAILED 'ingest metadata' 0.0%" in note
    with pytest.raises(actions.ActionRefused, match="does not exist") as missing:
        actions.set_state(77, "olivia", task="x")
    assert missing.value.status == 404
    with pytest.raises(actions.ActionRefused) as out_of_range:
        actions.set_state(2, "olivia", percent=101)
    assert out_of_range.value.status == 400


def test_only_record_writes_a_jobs_row():
    """``models.update_state`` is called by ``jobs.record`` alone (and offered by the published
    ``orm`` face): every other module states what happened through ``record``."""
    import pathlib
    import re

    package = pathlib.Path(models.__file__).parents[1]
    writers = sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                     if re.search(r"\bupdate_state\(", path.read_text()))
    assert writers == ["db/models.py", "jobs/record.py"], writers
