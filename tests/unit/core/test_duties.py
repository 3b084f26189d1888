"""The duties lock: one process on a volume runs the duties, and the embedded worker it started
keeps them taken until it too has exited (a killed server's worker finishes its stage first)."""

from __future__ import annotations

import sys

import pytest

from pacifica.core.duties import DutiesLock
from pacifica.core.worker import EmbeddedWorker


def test_one_holder_at_a_time_and_a_successor_after_release(tmp_path):
    path = str(tmp_path / "data" / ".duties.lock")
    first, second = DutiesLock(path), DutiesLock(path)
    assert first.acquire() and first.held
    assert not second.acquire() and not second.held
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.parametrize("hold", [True, False], ids=["given-the-lock", "not-given-it"])
def test_the_worker_holds_the_duties_after_its_server_gave_them_up(tmp_path, hold):
    path = str(tmp_path / ".duties.lock")
    server = DutiesLock(path)
    assert server.acquire()
    worker = EmbeddedWorker([sys.executable, "-c", "import time; time.sleep(60)"])
    worker.start(hold=server.fd if hold else None)
    try:
        # As when the server is killed: its own hold is gone, its worker still runs.
        server.release()
        successor = DutiesLock(path)
        assert successor.acquire() is not hold, "the old worker's hold on the duties is wrong"
    finally:
        worker.stop()
    assert successor.acquire(), "the duties stayed taken after the old worker exited"
    successor.release()
