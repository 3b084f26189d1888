"""The ingest service's metrics (``GET /metrics``); see ``core.metrics`` for how processes share them.

Samples of work (stage durations, bytes and files received and archived) are counted where the
work happens; the jobs by state and stage, uploads in flight and open, and the volume's free
space are read at each scrape (``state_metrics``).
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterator

import peewee
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import models, states

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

STAGE_SECONDS = Histogram("pacifica_ingest_stage_duration_seconds",
                          "How long each run of a stage took, by stage and outcome (ok, failed, retry).",
                          ["stage", "outcome"], buckets=STAGE_BUCKETS)
RECEIVED_BYTES = Counter("pacifica_ingest_received_bytes", "Bundle bytes received, by way in (upload, tus).",
                         ["way"])
RECEIVED_BUNDLES = Counter("pacifica_ingest_received_bundles",
                           "Bundles (and move documents) received whole, by way in (upload, tus, move).", ["way"])
RECEIVED_FILES = Counter("pacifica_ingest_received_files", "Files described by the bundles whose metadata was "
                         "loaded.", ["kind"])
ARCHIVED_BYTES = Counter("pacifica_ingest_archived_bytes", "Bytes sent to the archive and verified, by kind "
                         "(upload: streamed from a bundle; move: moved in place).", ["kind"])
ARCHIVED_FILES = Counter("pacifica_ingest_archived_files", "Files sent to the archive and verified, by kind.",
                         ["kind"])


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
