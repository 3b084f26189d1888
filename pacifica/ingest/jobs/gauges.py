"""What ``GET /metrics`` reads at each scrape: the jobs now in each state and stage, the jobs ended
in each state, uploads in flight and open, and the volume's free bytes."""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterable, Iterator
from typing import cast

import peewee
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..common import states
from ..db import archived, models


def _as_datetime(value) -> datetime.datetime:
    """SQLite hands an aggregate's datetime back as text."""
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))


def state_metrics(volume_path: str, open_uploads) -> Iterator:
    """The metrics read from the database and the volume at a scrape: jobs now in each state and
    stage, jobs ended in each state, uploads in flight, resumable uploads open, free bytes."""
    now = GaugeMetricFamily("pacifica_ingest_jobs", "Jobs not finished, by state and stage (task).",
                            labels=["state", "task"])
    ended = CounterMetricFamily("pacifica_ingest_jobs_ended", "Jobs finished, by final state (OK or FAILED) "
                                "and the stage they ended in.", labels=["state", "task"])
    in_flight = 0
    query = (models.IngestState.select(models.IngestState.state, models.IngestState.task,
                                       models.IngestState.complete, peewee.fn.COUNT(models.IngestState.job_id))
             .group_by(models.IngestState.state, models.IngestState.task, models.IngestState.complete).tuples())
    for state, task, complete, count in query:
        if complete:
            ended.add_metric([state, task], count)
        else:
            now.add_metric([state, task], count)
            if state == states.OK and task == states.UPLOADING:
                in_flight += count
    yield now
    yield ended
    idle = GaugeMetricFamily("pacifica_ingest_jobs_idle_seconds_max", "Of the jobs not finished, the longest "
                             "time one has gone without a change of state or progress, by stage (task).",
                             labels=["task"])
    oldest = (models.IngestState.select(models.IngestState.task, peewee.fn.MIN(models.IngestState.updated))
              .where(models.IngestState.complete == False)  # noqa: E712 - SQL, not Python
              .group_by(models.IngestState.task).tuples())
    clock = models.utcnow()
    for task, updated in oldest:
        if updated is not None:
            idle.add_metric([task], max(0.0, (clock - _as_datetime(updated)).total_seconds()))
    yield idle
    yield GaugeMetricFamily("pacifica_ingest_uploads_in_flight", "Jobs whose bundle is still arriving "
                            "(classic uploads and resumable uploads alike).", value=in_flight)
    yield GaugeMetricFamily("pacifica_ingest_resumable_uploads_open", "Resumable (tus) uploads on the volume, "
                            "started and not yet finished.", value=len(open_uploads()))
    yield GaugeMetricFamily("pacifica_ingest_volume_free_bytes", "Free bytes on the volume's filesystem.",
                            value=shutil.disk_usage(volume_path).free)
    yield from fixity_metrics(clock)


def fixity_metrics(clock: datetime.datetime) -> Iterator:
    """What fixity audits found, from the database (right whichever process or host checked):
    checks by outcome, failures, bytes found whole, files failing now, the oldest verification."""
    checked = CounterMetricFamily("pacifica_ingest_fixity_checked_files", "Fixity checks of archived files, by "
                                  "outcome (ok, failed, missing).", labels=["outcome"])
    failures = 0
    found_whole = 0
    event = archived.IngestFixityEvent
    query = cast(Iterable[tuple[str, int, int | None]],
                 event.select(event.outcome, peewee.fn.COUNT(event.event_id), peewee.fn.SUM(event.size))
                 .group_by(event.outcome).tuples())
    for outcome, count, size in query:
        checked.add_metric([outcome], count)
        if outcome == archived.OK:
            found_whole = int(size or 0)
        else:
            failures += count
    yield checked
    yield CounterMetricFamily("pacifica_ingest_fixity_failures", "Fixity checks that found a file changed or "
                              "missing.", value=failures)
    yield CounterMetricFamily("pacifica_ingest_fixity_checked_bytes", "Bytes read back by fixity checks and found "
                              "whole.", value=found_whole)
    failing = (archived.IngestArchivedFile.select()
               .where(archived.IngestArchivedFile.outcome.in_([archived.FAILED, archived.MISSING])).count())
    yield GaugeMetricFamily("pacifica_ingest_fixity_failing_files", "Archived files whose last fixity check "
                            "failed or found them missing.", value=failing)
    oldest = archived.oldest_verification()
    age = max(0.0, (clock - _as_datetime(oldest)).total_seconds()) if oldest is not None else 0.0
    yield GaugeMetricFamily("pacifica_ingest_fixity_oldest_verification_age_seconds", "How long ago the archived "
                            "file found whole longest ago was last found whole (at ingest, or by an audit).",
                            value=age)
