"""What an operator's monitoring reads: /metrics right across processes (a web server, a prefork
Celery worker and its pool processes), /health, and /ready with each check's status."""

from __future__ import annotations

import json
import time

import requests

from tests.support.bundles import make_bundle
from tests.support.metrics import scrape, value
from tests.support.procs import free_port

STAGES = ("open tar", "load metadata", "Policy Validation", "ingest files", "ingest metadata")


def test_metrics_count_the_work_of_every_process(stacks, tmp_path):
    """postgres-redis: the published peers, and a separate 'celery worker -c 2' (prefork) whose
    pool processes run the stages; the web server's /metrics shows their samples."""
    stack = stacks.get("postgres-redis")
    before = scrape(stack.url)
    files = {"data/m/one.bin": b"1" * 300_000, "data/m/two.bin": b"2" * 5000, "data/m/three.txt": b"three\n"}
    bundle = tmp_path / "m.tar"
    make_bundle(str(bundle), files)
    response = stack.upload(bundle)
    assert response.status_code == 200, response.text
    assert stack.wait_complete(int(response.json()["job_id"]), 120)["state"] == "OK"
    after = scrape(stack.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("pacifica_ingest_received_bytes_total", way="upload") == bundle.stat().st_size
    assert grew("pacifica_ingest_received_bundles_total", way="upload") == 1
    assert grew("pacifica_ingest_received_files_total", kind="upload") == 3
    assert grew("pacifica_ingest_archived_files_total", kind="upload") == 3
    assert grew("pacifica_ingest_archived_bytes_total", kind="upload") == sum(map(len, files.values()))
    for stage in STAGES:  # observed in the worker's pool processes
        assert grew("pacifica_ingest_stage_duration_seconds_count", stage=stage, outcome="ok") >= 1, stage
    assert grew("pacifica_ingest_jobs_ended_total", state="OK", task="ingest metadata") >= 1
    # The job id came from uniqueid in the web server; the metadata went from a pool process.
    assert grew("pacifica_peer_requests_total", peer="uniqueid", outcome="ok") >= 1
    assert grew("pacifica_peer_requests_total", peer="metadata", outcome="ok") >= 1
    assert grew("pacifica_peer_request_duration_seconds_count", peer="archiveinterface") >= 3
    assert value(after, "pacifica_ingest_volume_free_bytes") > 0
    assert ("pacifica_ingest_uploads_in_flight", ()) in after


def test_health_and_readiness_on_the_published_peers(stacks):
    stack = stacks.get("postgres-redis")
    assert requests.get(stack.url + "/health", timeout=10).json() == {"status": "ok"}
    response = requests.get(stack.url + "/ready", timeout=30)
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert set(checks) == {"database", "broker", "volume", "uniqueid", "policy", "archiveinterface", "metadata"}
    assert all(check["status"] == "ok" and check["latency_ms"] >= 0 for check in checks.values()), checks


def test_ready_answers_503_naming_the_peer_that_is_down(tmp_path):
    from tests.conftest import embedded_stack

    stack = embedded_stack("not-ready", tmp_path / "s")
    stack.settings["policy"] = {"ingest_url": f"http://127.0.0.1:{free_port()}/ingest"}  # nothing listens
    stack.write_config()
    stack.start_server()
    try:
        assert requests.get(stack.url + "/health", timeout=10).status_code == 200
        response = requests.get(stack.url + "/ready", timeout=30)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["policy"]["status"] == "down" and "onnection" in body["checks"]["policy"]["error"]
        assert {name for name, check in body["checks"].items() if check["status"] == "ok"} == \
            {"database", "broker", "volume", "archiveinterface"}
    finally:
        stack.stop()


def test_json_logs_carry_the_job_and_the_stage(tmp_path):
    from tests.conftest import embedded_stack

    stack = embedded_stack("json-logs", tmp_path / "s", log_format="json")
    stack.start_server()
    try:
        bundle = tmp_path / "j.tar"
        make_bundle(str(bundle), {"data/j/one.txt": b"one\n"})
        job = int(stack.upload(bundle).json()["job_id"])
        assert stack.wait_complete(job, 60)["state"] == "OK"
    finally:
        stack.stop()
    entries = []
    for line in stack.server.log().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    stages = {entry["stage"]: entry for entry in entries if entry.get("job_id") == job and "duration" in entry}
    assert set(stages) >= set(STAGES), entries[-20:]
    assert all(isinstance(entry["duration"], float) for entry in stages.values())
    # Celery's own records from the embedded worker are JSON lines too.
    assert any(entry["logger"].startswith("celery") for entry in entries)


def test_a_stuck_job_shows_in_the_idle_gauge(tmp_path):
    from tests.conftest import embedded_stack

    stack = embedded_stack("idle", tmp_path / "s")
    stack.start_server()
    try:
        created = requests.post(stack.url + "/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"},
                                timeout=30)
        assert created.status_code == 201
        time.sleep(2.5)
        samples = scrape(stack.url)
        assert value(samples, "pacifica_ingest_jobs", state="OK", task="UPLOADING") == 1
        assert value(samples, "pacifica_ingest_uploads_in_flight") == 1
        assert value(samples, "pacifica_ingest_resumable_uploads_open") == 1
        assert value(samples, "pacifica_ingest_jobs_idle_seconds_max", task="UPLOADING") >= 2
    finally:
        stack.stop()
