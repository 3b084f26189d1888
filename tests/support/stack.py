"""A running ingest deployment for integration tests: config file, server and Celery worker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import redis
import requests

from .procs import BIN, Proc, free_port, run, wait_for

CPCONFIG = """[global]
log.screen: False
server.socket_host: '127.0.0.1'
server.socket_port: {port}
server.max_request_body_size: 0

[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
tools.response_headers.on: True
tools.response_headers.headers: [('Content-Type', 'application/json')]
"""


class ArchiveInterface:
    """The published pacifica-archiveinterface (posix backend), run as a child process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = root / "archive"
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ArchiveInterface:
        self.prefix.mkdir(parents=True, exist_ok=True)
        cpconfig = self.root / "archive-cp.ini"
        cpconfig.write_text(CPCONFIG.format(port=self.port))
        exe = BIN / "pacifica-archiveinterface"
        if not exe.exists():
            raise AssertionError("pacifica-archiveinterface is not installed: pip install -e '.[test]'")
        self.proc = Proc("archiveinterface", [str(exe), "--cherrypy-config", str(cpconfig), "-p", str(self.port),
                                              "-a", "127.0.0.1", "--prefix", str(self.prefix)],
                         self.root / "archive.log").start()
        self.proc.wait_http(self.url + "/", 30)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def file(self, file_id: int) -> Path:
        """Where the posix backend keeps ``file_id`` (no id2filename)."""
        return self.prefix / str(file_id)


@dataclasses.dataclass
class Stack:
    """One ingest deployment: a config, a server process and a worker process."""

    name: str
    root: Path
    settings: dict[str, dict[str, str]]
    server: Proc | None = None
    worker: Proc | None = None
    port: int = 0

    @property
    def config_path(self) -> Path:
        return self.root / "config.cfg"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def volume(self) -> Path:
        return Path(self.settings["ingest"]["volume_path"])

    @property
    def env(self) -> dict[str, str]:
        return {"INGEST_CONFIG": str(self.config_path)}

    def write_config(self) -> None:
        lines = []
        for section, values in self.settings.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in values.items())
            lines.append("")
        self.config_path.write_text("\n".join(lines))

    def cmd(self, *args: str, timeout: float = 120):
        """Run ``pacifica-ingest-cmd -c <config> args...``."""
        return run([str(BIN / "pacifica-ingest-cmd"), "-c", str(self.config_path), *args], timeout=timeout)

    def start_server(self) -> None:
        self.port = self.port or free_port()
        cpconfig = self.root / "cp.ini"
        cpconfig.write_text(CPCONFIG.format(port=self.port))
        self.server = Proc(f"{self.name}-server",
                           [str(BIN / "pacifica-ingest"), "-c", str(self.config_path), "--cp-config", str(cpconfig),
                            "-p", str(self.port), "-a", "127.0.0.1"],
                           self.root / "server.log").start()
        self.server.wait_http(self.url + "/", 60)

    def start_worker(self, node: str = "w1", concurrency: int = 2) -> Proc:
        worker = Proc(f"{self.name}-worker-{node}",
                      [str(BIN / "celery"), "-A", "pacifica.ingest.tasks", "worker", "-l", "INFO",
                       "-c", str(concurrency), "-n", f"{node}-{self.name}@%h",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"],
                      self.root / f"worker-{node}.log", env=self.env).start()
        worker.wait_log(" ready.", 60)
        if node == "w1":
            self.worker = worker
        return worker

    def stop(self) -> None:
        for proc in (self.server, self.worker):
            if proc is not None:
                proc.stop()

    # ---- client side --------------------------------------------------------------------

    def upload(self, path: Path, user: str | None = None, **headers: str) -> requests.Response:
        if user is not None:
            headers["X-Http-Authed-User"] = user
        with open(path, "rb") as body:
            return requests.post(self.url + "/upload", data=body, timeout=60,
                                 headers={"Content-Type": "application/octet-stream", **headers})

    def move(self, document: Any) -> requests.Response:
        return requests.post(self.url + "/move", data=json.dumps(document), timeout=60,
                             headers={"Content-Type": "application/json"})

    def state(self, job_id: Any) -> requests.Response:
        return requests.get(self.url + "/get_state", params={"job_id": job_id}, timeout=30)

    def wait_complete(self, job_id: int, timeout: float = 60) -> dict[str, Any]:
        """Poll get_state until the job is complete; return its final state."""
        def done():
            body = self.state(job_id).json()
            return body if body.get("complete") else None

        try:
            return wait_for(done, timeout, f"job {job_id} to complete", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last state {self.state(job_id).json()}\n"
                                 f"worker log:\n{self.worker.log()[-4000:] if self.worker else ''}") from None

    def task_results(self, job_id: int) -> dict[str, str]:
        """Return {celery task name: status} of the stages Celery recorded for ``job_id``."""
        client = redis.Redis.from_url(self.settings["celery"]["backend_url"])
        results = {}
        try:
            for key in client.scan_iter("celery-task-meta-*"):
                meta = json.loads(client.get(key))
                args = meta.get("args") or []
                if args and isinstance(args[0], dict) and args[0].get("job_id") == job_id:
                    results[meta.get("name")] = meta.get("status")
        finally:
            client.close()
        return results


def wait_results(stack: Stack, job_id: int, names: set[str], timeout: float = 20) -> dict[str, str]:
    """Wait until Celery recorded a result for each task in ``names`` for ``job_id``."""
    def recorded():
        results = stack.task_results(job_id)
        return results if names <= set(results) else None

    return wait_for(recorded, timeout, f"celery results {names} of job {job_id}")

