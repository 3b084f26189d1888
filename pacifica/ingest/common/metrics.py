"""The ingest service's metrics (``GET /metrics``); see ``core.metrics`` for how processes share them.

Samples of work (stage durations, bytes and files received and archived) are counted where the
work happens; what is read at each scrape (jobs by state, uploads open, free space) is in
``jobs.gauges``.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
