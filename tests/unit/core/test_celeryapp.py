"""The Celery app holds its service's runtime: given by the root, or built once on first use."""

from __future__ import annotations

import threading

import pytest

from pacifica.core.celeryapp import ServiceCelery


def test_a_task_gets_the_runtime_the_root_gave_and_builds_none():
    app = ServiceCelery("unit")
    app.provide(lambda: pytest.fail("the factory ran although a runtime was given"))
    given = object()
    app.use(given)

    @app.task(bind=True)
    def which(self):
        return self.app.runtime()

    assert which() is given and app.has_runtime()


def test_a_worker_builds_the_runtime_once_however_many_threads_ask():
    app = ServiceCelery("unit")
    built = []
    gate = threading.Barrier(8)

    def factory():
        built.append(object())
        return built[-1]

    app.provide(factory)
    assert not app.has_runtime()
    seen = []

    def ask():
        gate.wait()
        seen.append(app.runtime())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and seen == built * 8


def test_without_a_root_the_app_says_it_was_not_configured():
    with pytest.raises(RuntimeError, match="unit service was not configured"):
        ServiceCelery("unit").runtime()
