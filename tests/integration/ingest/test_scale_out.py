"""Scaling out is Celery's job: two workers on one RabbitMQ and one PostgreSQL share the jobs."""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import redis

from tests.support import services
from tests.support.archive import archive_listing
from tests.support.bundles import make_bundle
from tests.support.stack import Stack

JOBS = 32


def test_two_workers_take_32_jobs_between_them(tmp_path):
    shared = tmp_path / "shared"
    stack = Stack(name="scaleout", root=tmp_path, settings={
        "ingest": {"data_dir": str(tmp_path / "data"), "volume_path": str(shared / "volume")},
        "archiveinterface": {"url": f"file://{shared}/archive"},
        "celery": {"broker_url": services.rabbitmq_vhost("pacifica_ingest_test_scaleout"),
                   "backend_url": services.redis_db()},
        "database": {"peewee_url": services.create_postgres_db("pacifica_ingest_scaleout")},
    })
    stack.write_config()
    assert stack.cmd("dbsync").returncode == 0
    stack.start_server()
    workers = [stack.start_worker("alpha", concurrency=1), stack.start_worker("beta", concurrency=1)]
    try:
        expected = {}
        for number in range(JOBS):
            files = {f"data/job{number}/a.bin": os.urandom(20_000), f"data/job{number}/b.txt": b"b\n" * number}
            path = tmp_path / f"bundle{number}.tar"
            make_bundle(str(path), files)
            expected[stack.upload(path).json()["job_id"]] = files
        for job_id in expected:
            final = stack.wait_complete(job_id, timeout=120)
            assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final
    finally:
        stack.stop()
        for worker in workers:
            worker.stop()

    done = [len(re.findall(r"Task pacifica\.ingest\.\w+\[[^]]+\] succeeded", worker.log())) for worker in workers]
    assert all(count > 0 for count in done), f"one worker did nothing: {done}"
    assert sum(done) == JOBS * 5, f"stages ran {sum(done)} times for {JOBS} jobs of 5 stages"

    client = redis.Redis.from_url(stack.settings["celery"]["backend_url"])
    finals = Counter()
    for key in client.scan_iter("celery-task-meta-*"):
        meta = json.loads(client.get(key))
        if meta.get("name") == "pacifica.ingest.ingest_metadata" and meta.get("status") == "SUCCESS":
            finals[meta["args"][0]["job_id"]] += 1
    client.close()
    assert finals == Counter({job_id: 1 for job_id in expected}), "a job completed more than once, or never"

    file_ids = []
    for job_id, files in expected.items():
        recorded = stack.files(job_id)
        assert sorted(item["name"] for item in recorded) == ["a.bin", "b.txt"]
        for item in recorded:
            assert stack.archived(item["_id"]).read_bytes() == files[f"data/{item['subdir']}/{item['name']}"]
            file_ids.append(item["_id"])
    assert len(file_ids) == len(set(file_ids)) == 2 * JOBS
    assert archive_listing(shared / "archive") == sorted(str(file_id) for file_id in file_ids)
