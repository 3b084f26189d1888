"""Jobs queued on the embedded stack survive the service being stopped or killed."""

from __future__ import annotations

import os
import signal

import pytest

from pacifica.ingest.volume.arrival import STAGE_MIN
from tests.conftest import embedded_stack
from tests.support.archive import archive_listing
from tests.support.bundles import make_bundle
from tests.support.procs import wait_for

JOBS = 8


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGKILL, False),
                                            (signal.SIGKILL, True)],
                         ids=["sigterm", "sigkill-server", "sigkill-everything"])
def test_every_job_completes_after_a_restart(tmp_path, sig, group):
    stack = embedded_stack(f"restart-{sig}", tmp_path / "stack", worker_concurrency="1", transfer_size="256 Kb")
    stack.start_server()
    expected = {}
    try:
        for number in range(JOBS):
            # The first job is long to archive, so that the stop lands in the middle of its
            # 'ingest files': many files each copied (under STAGE_MIN; a staged member is only
            # linked, which takes no time at all).
            if number == 0:
                files = {f"data/run0/part{part}.bin": os.urandom(STAGE_MIN // 16) for part in range(3000)}
            else:
                files = {f"data/run{number}/part{part}.bin": os.urandom(1024 * 1024) for part in range(3)}
            path = tmp_path / f"bundle{number}.tar"
            make_bundle(str(path), files)
            response = stack.upload(path)
            assert response.status_code == 200, response.text
            expected[response.json()["job_id"]] = files
        first = next(iter(expected))
        wait_for(lambda: stack.state(first).json()["task"] == "ingest files", 60, "the large job to be archiving")
        stack.server.kill(sig, group)
        unfinished = [job for job in expected if not stack.state_after_stop(job)["complete"]]
        assert first in unfinished, "the large job finished before the stop: nothing was tested"
        stack.start_server()
        for job_id in expected:
            final = stack.wait_complete(job_id, timeout=180)
            assert (final["state"], final["task"]) == ("OK", "ingest metadata"), final
    finally:
        stack.stop(signal.SIGKILL)

    archived = {}
    for job_id, files in expected.items():
        recorded = stack.files(job_id)
        assert len(recorded) == len(files)
        for item in recorded:
            archived[item["_id"]] = files[f"data/{item['subdir']}/{item['name']}"]
    log = stack.server.log()
    if group and sig == signal.SIGKILL:
        # The killed worker held the large job's message: only start-up recovery can finish it.
        assert f"job {first}: resuming at 'ingest files'" in log
    # Never two workers on one stage: a killed server's worker finishes its stage before the
    # successor takes the duties (and resumes the job), so the stage ends once.
    assert log.count(f"job {first}: 'ingest files' ok") == 1, "the large job's 'ingest files' ran twice"
    listing = archive_listing(stack.data_dir / "archive", leftovers_allowed=True)
    assert listing == sorted(str(file_id) for file_id in archived), "the archive holds missing, extra or temp files"
    for file_id, data in archived.items():
        assert stack.archived(file_id).read_bytes() == data
    assert wait_for(lambda: not any(name.endswith(".tar") for name in os.listdir(stack.volume)), 10,
                    "completed bundles to leave the volume")
