"""The JSON body of a job's state, identical on every database."""

from __future__ import annotations

import re

from pacifica.ingest.compat.orm import read_state, update_state
from pacifica.ingest.db import migrations
from pacifica.ingest.utils import create_state_response

KEYS = {"job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"}
PROGRESS = {"bytes_done", "bytes_total", "files_done", "files_total"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def test_state_response_shape(database):
    migrations.upgrade(database)
    update_state(1234, "OK", "UPLOADING", 0)
    body = create_state_response(read_state(1234))
    assert set(body) == KEYS | PROGRESS  # every 0.4.1 key, plus the progress counters
    assert all(body[key] == 0 for key in PROGRESS)
    assert body["job_id"] == 1234 and isinstance(body["job_id"], int)
    assert (body["state"], body["task"], body["task_percent"], body["complete"], body["exception"]) == \
        ("OK", "UPLOADING", "0.0", False, "")
    assert TIMESTAMP.match(body["created"]) and TIMESTAMP.match(body["updated"])


def test_percent_and_completion(database):
    migrations.upgrade(database)
    update_state(1, "OK", "ingest files", 33.3)
    assert create_state_response(read_state(1))["task_percent"] == "33.3"
    update_state(1, "OK", "ingest metadata", 100)
    body = create_state_response(read_state(1))
    assert (body["task_percent"], body["complete"]) == ("100.0", True)
    update_state(2, "FAILED", "ingest files", 0, "sha1 mismatch")
    body = create_state_response(read_state(2))
    assert (body["state"], body["complete"], body["exception"]) == ("FAILED", True, "sha1 mismatch")
