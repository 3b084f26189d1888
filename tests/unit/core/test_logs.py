"""JSON log lines carry the job, cart, stage, peer and duration as fields."""

from __future__ import annotations

import json
import logging

from pacifica.core.logs import JsonFormatter


def test_a_record_becomes_one_json_object_with_its_fields():
    record = logging.LogRecord("pacifica.ingest.jobs.record", logging.WARNING, __file__, 1,
                               "job %s failed in %r", (7, "open tar"), None)
    record.job_id, record.stage, record.duration = 7, "open tar", 0.25
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "job 7 failed in 'open tar'"
    assert (entry["level"], entry["logger"], entry["job_id"], entry["stage"], entry["duration"]) == \
        ("WARNING", "pacifica.ingest.jobs.record", 7, "open tar", 0.25)
    assert "cart_id" not in entry and entry["time"].endswith("+00:00")


def test_an_exception_stays_inside_its_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError" in json.loads(line)["exception"]
