"""The one composition of a running ingest service, shared by ``pacifica-ingest`` and the WSGI module.

A service is the REST application plus its duties: start-up recovery of unfinished jobs (embedded
broker), the embedded Celery worker, expiry of failed bundles and expiry of idle resumable
uploads. Several processes may serve one volume (uWSGI's ``--processes``, a second host); the
duties run in exactly one of them at a time, the one holding the lock file
``<volume_path>/.duties.lock``. The others try again every few seconds, so a successor takes over
when the holder dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time

import cherrypy
from cherrypy.process import plugins

from . import orm
from .config import Settings

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
FAILED_EXPIRY_SECONDS = 3600.0


class DutiesLock:
    """An exclusive, non-blocking ``fcntl`` lock on a file; released when its process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; return whether this process now holds it."""
        if self._fd is not None:
            return True
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Duties(plugins.SimplePlugin):
    """CherryPy engine plugin running the service's background duties in the lock holder."""

    def __init__(self, bus, settings: Settings) -> None:
        super().__init__(bus)
        self.settings = settings
        self.lock = DutiesLock(os.path.join(settings.volume_path, ".duties.lock"))
        self.worker = None
        if settings.run_embedded_worker:
            from .worker import EmbeddedWorker

            self.worker = EmbeddedWorker(settings)
        self._due: dict[str, float] = {}
        self.monitor = plugins.Monitor(bus, self.tick, frequency=CHECK_SECONDS, name="ingest duties")

    def subscribe(self) -> None:
        """Register with the engine, and the monitor that keeps the duties going."""
        super().subscribe()
        self.monitor.subscribe()

    def start(self) -> None:
        """Take the duties at once if no other process holds them."""
        self.tick()

    # Before the HTTP server (75): recovery re-queues jobs before any client can ask about them.
    start.priority = 70

    def tick(self) -> None:
        """Take the duties if they are free, keep the worker alive, run housekeeping that is due."""
        try:
            if not self.lock.held:
                if not self.lock.acquire():
                    return
                self._lead()
            if self.worker is not None:
                self.worker.check()
            self._housekeeping()
        except Exception:  # a duty's failure must not stop the monitor thread
            logger.exception("ingest duties failed; trying again in %ss", CHECK_SECONDS)

    def _lead(self) -> None:
        logger.info("this process (pid %s) runs the service's duties", os.getpid())
        if self.settings.broker_embedded:
            from .bootstrap import runtime
            from .recovery import recover

            with orm.DB.connection_context():
                recover(self.settings.data_path("queue"), runtime().spool)
        if self.worker is not None:
            self.worker.start()

    def _housekeeping(self) -> None:
        if self.settings.failed_retention > 0 and self._is_due("failed", FAILED_EXPIRY_SECONDS):
            from .bootstrap import runtime
            from .housekeeping import expire_failed_bundles

            with orm.DB.connection_context():
                expire_failed_bundles(runtime().spool, self.settings.failed_retention)
        # Idle uploads are checked a few times per expiry period, at most hourly.
        every = min(3600.0, max(1.0, self.settings.upload_expiry * 3600 / 4))
        if self.settings.upload_expiry > 0 and self._is_due("uploads", every):
            from .tus_rest import expire_uploads, store

            with orm.DB.connection_context():
                expire_uploads(store())

    def _is_due(self, name: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(name, 0.0):
            return False
        self._due[name] = now + every
        return True

    def stop(self) -> None:
        """Stop the embedded worker (running stages finish) and give the duties up."""
        if self.worker is not None:
            self.worker.stop()
        self.lock.release()

    stop.priority = 10


def compose(settings: Settings, cp_config: str | None, bus=None) -> cherrypy.Application:
    """Build the application and subscribe its duties to the engine; return the application."""
    from .rest import make_app

    app = make_app(cp_config)
    Duties(bus or cherrypy.engine, settings).subscribe()
    return app
