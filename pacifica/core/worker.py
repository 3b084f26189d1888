"""A Celery worker that a service runs beside its web server (the embedded setup).

It is an ordinary ``celery -A <tasks module> worker`` child process with the same settings,
started and stopped by the service's duties (``duties.Duties``) and restarted if it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the worker if the server process dies, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def python_executable() -> str:
    """This environment's interpreter. Under uWSGI, ``sys.executable`` is the uwsgi binary or the
    base interpreter of the virtualenv (pyuwsgi), which has none of the service's packages."""
    for name in ("python3", "python"):
        candidate = os.path.join(sys.prefix, "bin", name)
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def worker_command(tasks: str, concurrency: int, name: str = "embedded") -> list[str]:
    """Return the command line of an embedded worker of the Celery app in module ``tasks``.

    Its pool is threads, not prefork: a prefork pool could hang for ever at exit. billiard
    replaces an exited pool process from its supervisor thread, and Celery has every pool
    process killed (SIGKILL) when the thread that forked it ends; a replacement forked while the
    pool was closing died with the pool's queue lock held, and the exit handler waited on that
    lock. The stages wait on the network and disk (hashing releases the GIL), so threads lose
    nothing, and one process is all there is to stop.
    """
    return [python_executable(), "-m", "celery", "-A", tasks, "worker", "-l", "INFO",
            "-P", "threads", "-c", str(max(1, concurrency)), "-n", f"{name}-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


class EmbeddedWorker:
    """Owner of the worker child process: ``command`` run with this environment plus ``env``."""

    # Well inside uWSGI's 60 s "mercy" for a stopping worker process, which would otherwise kill
    # the server process first. A stage cut short is safe: stages are idempotent and start-up
    # recovery re-queues the job.
    def __init__(self, command: list[str], env: dict[str, str] | None = None, stop_timeout: float = 20.0) -> None:
        self.command = command
        self.env = env or {}
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None

    def start(self, hold: int | None = None) -> None:
        """Start the worker process; it keeps the file ``hold`` open (and so a lock on it) until it exits."""
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(self.command, env=env, preexec_fn=_die_with_parent,
                                        pass_fds=() if hold is None else (hold,))
        logger.info("embedded worker started (pid %s)", self.process.pid)

    def check(self, hold: int | None = None) -> None:
        """Restart the worker (keeping ``hold`` open, as ``start``) if it exited while the server runs."""
        if self.process is not None and self.process.poll() is not None:
            logger.error("embedded worker exited with status %s; restarting it", self.process.returncode)
            self.start(hold)

    def stop(self) -> None:
        """Stop the worker: a warm shutdown (running stages finish), then SIGKILL after the timeout."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.error("embedded worker did not stop within %ss; killing it", self.stop_timeout)
            process.kill()
            process.wait()
        logger.info("embedded worker stopped")
