"""A service's Celery app, which also holds the runtime its tasks work with.

The composition root of each service builds the runtime (settings, database, peers) and hands
it to the app with ``use``; a worker process, which starts with no runtime, builds it on its
first task with the factory the root ``provide``\\ d. So tasks reach their world through their
own app (``self.app.runtime()``), never through a module-level global.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import peewee
from celery import Celery, Task


class ServiceCelery(Celery):
    """A Celery app holding the runtime of the service it belongs to."""

    def __init__(self, main: str, **kwargs: Any) -> None:
        super().__init__(main, set_as_current=False, **kwargs)
        self._service_runtime: Any = None
        self._runtime_factory: Callable[[], Any] | None = None
        self._runtime_lock = threading.Lock()

    def provide(self, factory: Callable[[], Any]) -> None:
        """Set how to build the runtime when a task needs it and none was given (a worker)."""
        self._runtime_factory = factory

    def use(self, runtime: Any) -> None:
        """Make ``runtime`` the one this process's tasks work with."""
        self._service_runtime = runtime

    def has_runtime(self) -> bool:
        """True once a runtime was given or built in this process."""
        return self._service_runtime is not None

    def runtime(self) -> Any:
        """Return the runtime, building it with the provided factory on first use."""
        if self._service_runtime is None:
            with self._runtime_lock:
                if self._service_runtime is None:
                    if self._runtime_factory is None:
                        raise RuntimeError(f"the {self.main} service was not configured in this process")
                    self.use(self._runtime_factory())
        return self._service_runtime


class ServiceTask(Task):
    """Base of a service's tasks: the one place a task gets its runtime (``self.runtime``), and
    one connection to the service's ``database`` held for the task's run."""

    database: peewee.DatabaseProxy

    @property
    def runtime(self) -> Any:
        """The runtime of this process (built on the first task of a worker)."""
        return self.app.runtime()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.runtime  # noqa: B018 - build the runtime (and bind the database) before connecting
        with self.database.connection_context():
            return super().__call__(*args, **kwargs)
