"""A stage's message for a job that has ended changes nothing: a killed server's worker that
finishes a stage its successor also resumed, a broker's second delivery, a stage still queued
when an operator failed the job."""

from __future__ import annotations

import types

import pytest
from celery.exceptions import Ignore

from pacifica.ingest.common import states
from pacifica.ingest.db import migrations, models
from pacifica.ingest.jobs import actions, record, stages
from pacifica.ingest.jobs.celery_app import INGEST_APP


@pytest.fixture
def runtime(database):
    migrations.upgrade(database)
    # The stages never reach their runtime here: an ended job stops them before any work.
    INGEST_APP.use(types.SimpleNamespace())
    yield
    INGEST_APP.use(None)


def _completed(job_id: int) -> None:
    record.upload_whole(job_id, 10)
    for name in (states.OPEN_TAR, states.LOAD_METADATA, states.POLICY_VALIDATION, states.INGEST_FILES,
                 states.INGEST_METADATA):
        with record.stage(job_id, name):
            pass


def _failed_by_operator(job_id: int) -> None:
    record.upload_whole(job_id, 10)
    with record.stage(job_id, states.LOAD_METADATA):
        pass
    actions.fail(job_id, "olivia", "the jobs page")


@pytest.mark.parametrize("end", [_completed, _failed_by_operator], ids=["completed", "failed-by-operator"])
@pytest.mark.parametrize("row", stages.UPLOAD + stages.MOVE, ids=lambda row: row.task_name)
def test_a_stage_of_an_ended_job_is_ignored_and_changes_nothing(runtime, end, row):
    end(5)
    before = models.read_state(5)
    history = len(models.read_history(5))
    with pytest.raises(Ignore):
        row.task(stages.make_context(5, "/nowhere/5.tar", "alice", move=row in stages.MOVE))
    after = models.read_state(5)
    assert (after.state, after.task, after.task_percent, after.exception, after.complete) == \
        (before.state, before.task, before.task_percent, before.exception, True)
    assert len(models.read_history(5)) == history


def test_a_stage_of_a_running_job_runs(runtime):
    """The guard lets a job that has not ended through: its stage runs (and here fails, for a
    bundle that is not there), recording what happened."""
    record.upload_whole(6, 10)
    with pytest.raises(Exception, match=r"6\.tar"):
        stages.OPEN_TAR.task(stages.make_context(6, "/nowhere/6.tar", "alice"))
    row = models.read_state(6)
    assert (row.state, row.task, row.complete) == (states.FAILED, states.OPEN_TAR, True)
