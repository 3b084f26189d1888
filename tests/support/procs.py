"""Start, watch and stop the service's processes for tests; poll with deadlines."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def host_lock(name: str, timeout: float = 3600) -> Iterator[None]:
    """Hold the lock ``name`` that every run of this suite on this host shares, for what cannot
    be named per run (the documented default ports 8066 and 8081, the compose project): two
    runs at once take turns there instead of stopping each other's containers."""
    fd = os.open(os.path.join(tempfile.gettempdir(), f"pacifica-tests-{name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"another run of the suite held the lock {name!r} "
                                         f"for {timeout:.0f} s") from None
                time.sleep(1)
        yield
    finally:
        os.close(fd)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Return the first truthy value of ``predicate()``, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error on timeout
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" +
                         (f" (last error: {last_error!r})" if last_error else ""))


class Proc:
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str | None] | None = None,
                 cwd: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        # A None value removes the variable from the child's environment.
        self.env = {key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None}
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                      start_new_session=True, cwd=self.cwd)
        log.close()
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_log(self, text: str, timeout: float) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()[-3000:]}")
            return text in self.log()

        wait_for(ready, timeout, f"{self.name} to log {text!r}")

    def wait_http(self, url: str, timeout: float) -> None:
        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()[-3000:]}")
            return requests.get(url, timeout=2).status_code == 200

        try:
            wait_for(up, timeout, f"{self.name} at {url}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()[-3000:]}") from None

    def kill(self, sig: int, group: bool) -> None:
        """Send ``sig`` to the process (``group``: and to every process it started) and wait for it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        if group:
            os.killpg(self.popen.pid, sig)
        else:
            self.popen.send_signal(sig)
        self.popen.wait(60)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        except ProcessLookupError:
            pass


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120,
        check: bool = False, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion and return its result (text output)."""
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            timeout=timeout, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
