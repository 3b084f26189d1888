"""The background duties of a service, run by exactly one of the processes that serve a volume.

A service is its REST application plus duties: something to do once when a process takes them
(start-up recovery), an embedded worker to keep alive, and chores to repeat (expiries). Several
processes may serve one volume (uWSGI's ``--processes``, a second host); the duties run in the
one holding the lock file, and the others try again every few seconds, so a successor takes over
when the holder dies. The embedded worker holds the lock too (it inherits the locked file): a
server killed in the middle of a stage leaves its worker finishing that stage (a warm shutdown),
and a successor that resumed the job meanwhile would run the stage a second time beside it. Both
services' servers and WSGI modules subscribe their ``Duties`` to the CherryPy engine.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Callable, Sequence

from cherrypy.process import plugins
from cherrypy.process.wspbus import Bus

from .worker import EmbeddedWorker

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0


class DutiesLock:
    """An exclusive, non-blocking ``flock`` on a file, held until every process given its file
    (``fd``) has closed it or died.

    ``flock``, not ``lockf``: a ``lockf`` lock belongs to one process and is not passed on to a
    child, and the worker child must keep the lock after its server dies. On NFS, where Linux
    emulates ``flock`` with a lock of the whole file, the lock still keeps other hosts out, but
    a child may not keep it, so a killed server's worker may still be finishing a stage when a
    successor resumes the job (ingest's stages then ignore a message for a job that has ended).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fd is not None

    @property
    def fd(self) -> int | None:
        """The locked file while this process holds the lock (for a child to hold it too)."""
        return self._fd

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; return whether this process now holds it."""
        if self._fd is not None:
            return True
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it, once no child holds it either)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@dataclasses.dataclass
class Chore:
    """A duty repeated every ``every`` seconds (first when the duties are taken)."""

    name: str
    every: float
    run: Callable[[], object]


class Duties(plugins.SimplePlugin):
    """CherryPy engine plugin running a service's background duties in the lock holder."""

    def __init__(self, bus: Bus, lock_path: str, on_lead: Callable[[], object] | None = None,
                 worker: EmbeddedWorker | None = None, chores: Sequence[Chore] = ()) -> None:
        super().__init__(bus)
        self.lock = DutiesLock(lock_path)
        self.on_lead = on_lead
        self.worker = worker
        self.chores = list(chores)
        self._due: dict[str, float] = {}
        self.monitor = plugins.Monitor(bus, self.tick, frequency=CHECK_SECONDS, name="service duties")

    def subscribe(self) -> None:
        """Register with the engine, and the monitor that keeps the duties going."""
        super().subscribe()
        self.monitor.subscribe()

    def start(self) -> None:
        """Take the duties at once if no other process holds them."""
        self.tick()

    # Before the HTTP server (75): recovery re-queues work before any client can ask about it.
    start.priority = 70  # type: ignore[attr-defined]  # CherryPy's way to order a plugin's listeners

    def tick(self) -> None:
        """Take the duties if they are free, keep the worker alive, run the chores that are due."""
        try:
            if not self.lock.held:
                if not self.lock.acquire():
                    return
                logger.info("this process (pid %s) runs the service's duties", os.getpid())
                if self.on_lead is not None:
                    self.on_lead()
                if self.worker is not None:
                    self.worker.start(hold=self.lock.fd)
            if self.worker is not None:
                self.worker.check(hold=self.lock.fd)
            now = time.monotonic()
            for chore in self.chores:
                if now >= self._due.get(chore.name, 0.0):
                    self._due[chore.name] = now + chore.every
                    chore.run()
        except Exception:  # a duty's failure must not stop the monitor thread
            logger.exception("service duties failed; trying again in %ss", CHECK_SECONDS)

    def stop(self) -> None:
        """Stop the embedded worker (running tasks finish) and give the duties up."""
        if self.worker is not None:
            self.worker.stop()
        self.lock.release()

    stop.priority = 10  # type: ignore[attr-defined]  # as above
