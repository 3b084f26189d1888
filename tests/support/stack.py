"""A running ingest deployment for integration tests: config file, server and Celery worker."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path
from typing import Any

import redis
import requests

from .procs import BIN, Proc, free_port, run, wait_for

CPCONFIG = """[global]
log.screen: True
server.socket_host: '127.0.0.1'
server.socket_port: {port}
server.max_request_body_size: 0

[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
tools.response_headers.on: True
tools.response_headers.headers: [('Content-Type', 'application/json')]
"""


@dataclasses.dataclass
class Stack:
    """One ingest deployment: a config, a server process and (unless embedded) a worker process.

    ``peers`` and ``archive`` are the HTTP test peers and archive interface when the stack uses
    them; an embedded stack keeps metadata and files under its data directory.
    """

    name: str
    root: Path
    settings: dict[str, dict[str, str]]
    server: Proc | None = None
    worker: Proc | None = None
    port: int = 0
    peers: Any = None
    archive: Any = None
    # Sent with every request the helpers below make (an Authorization header, say).
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.peers is None

    @property
    def data_dir(self) -> Path:
        return Path(self.settings["ingest"]["data_dir"])

    def archived(self, file_id: int) -> Path:
        """Where the archive keeps ``file_id``."""
        if self.archive is not None:
            return self.archive.file(file_id)
        url = self.settings.get("archiveinterface", {}).get("url", "")
        root = Path(url[len("file://"):]) if url.startswith("file://") else self.data_dir / "archive"
        return root / str(file_id)

    def metadata(self, job_id: int) -> list[dict[str, Any]] | None:
        """The metadata document the metadata service recorded for ``job_id``."""
        if self.peers is not None:
            return self.peers.published.document(job_id)
        result = self.cmd("metadata", "--job-id", str(job_id))
        if result.returncode != 0 and "no metadata stored" not in result.stderr:
            raise AssertionError(f"pacifica-ingest-cmd metadata failed ({result.returncode}): {result.stderr[-2000:]}")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def files(self, job_id: int) -> list[dict[str, Any]]:
        """The Files objects the metadata service recorded for ``job_id``."""
        return [item for item in self.metadata(job_id) or [] if item.get("destinationTable") == "Files"]

    @property
    def config_path(self) -> Path:
        return self.root / "config.cfg"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def volume(self) -> Path:
        return Path(self.settings["ingest"].get("volume_path", str(self.data_dir / "volume")))

    @property
    def env(self) -> dict[str, str]:
        # The environment wins over the config file, so the data directory is passed there too.
        return {"INGEST_CONFIG": str(self.config_path), "INGEST_DATA_DIR": str(self.data_dir)}

    def write_config(self) -> None:
        lines = []
        for section, values in self.settings.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in values.items())
            lines.append("")
        self.config_path.write_text("\n".join(lines))

    def cmd(self, *args: str, timeout: float = 120):
        """Run ``pacifica-ingest-cmd -c <config> args...``."""
        return run([str(BIN / "pacifica-ingest-cmd"), "-c", str(self.config_path), *args], timeout=timeout,
                   env=self.env)

    def start_server(self, address: str = "127.0.0.1") -> None:
        self.port = self.port or free_port()
        cpconfig = self.root / "cp.ini"
        cpconfig.write_text(CPCONFIG.format(port=self.port))
        self.server = Proc(f"{self.name}-server",
                           [str(BIN / "pacifica-ingest"), "-c", str(self.config_path), "--cp-config", str(cpconfig),
                            "-p", str(self.port), "-a", address],
                           self.root / "server.log", env=self.env).start()
        self.server.wait_http(self.url + "/", 60)

    def start_uwsgi(self, *options: str, log: str = "uwsgi.log") -> Proc:
        """Serve the stack with the real ``uwsgi`` binary: the seed's command on a loopback port,
        then ``options``."""
        self.port = self.port or free_port()
        self.server = Proc(f"{self.name}-uwsgi",
                           [str(BIN / "uwsgi"), "--http-socket", f"127.0.0.1:{self.port}", "--master",
                            "--module", "pacifica.ingest.wsgi", *options],
                           self.root / log, env=self.env).start()
        self.server.wait_http(self.url + "/", 60)
        return self.server

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

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for proc in (self.server, self.worker):
            if proc is not None:
                proc.stop(sig)

    # ---- client side --------------------------------------------------------------------

    def upload(self, path: Path, user: str | None = None, **headers: str) -> requests.Response:
        if user is not None:
            headers["X-Http-Authed-User"] = user
        with open(path, "rb") as body:
            return requests.post(self.url + "/upload", data=body, timeout=60,
                                 headers={"Content-Type": "application/octet-stream", **self.headers, **headers})

    def tus_send(self, data: bytes, user: str | None = None) -> int:
        """Send ``data`` as a whole resumable (tus) upload, in its creation request; return the job id.
        Resumable uploads are not looked at before they are whole: a bundle that is not a tar
        reaches 'open tar' this way."""
        headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
                   "Content-Type": "application/offset+octet-stream", **self.headers}
        if user is not None:
            headers["X-Http-Authed-User"] = user
        created = requests.post(self.url + "/uploads/", data=data, headers=headers, timeout=60)
        assert created.status_code == 201, created.text
        return created.json()["job_id"]

    def move(self, document: Any) -> requests.Response:
        return requests.post(self.url + "/move", data=json.dumps(document), timeout=60,
                             headers={"Content-Type": "application/json", **self.headers})

    def state(self, job_id: Any) -> requests.Response:
        return requests.get(self.url + "/get_state", params={"job_id": job_id}, timeout=30, headers=self.headers)

    def history(self, job_id: Any) -> list[dict[str, Any]]:
        """The job's history, as get_state?history=true answers it."""
        response = requests.get(self.url + "/get_state", params={"job_id": job_id, "history": "true"}, timeout=30,
                                headers=self.headers)
        return response.json().get("history", [])

    def state_after_stop(self, job_id: int) -> dict[str, Any]:
        """Read a job's state straight from the stack's database (its server is not running)."""
        from pacifica.core.database import make_database
        from pacifica.ingest.compat.orm import IngestState
        from pacifica.ingest.utils import create_state_response

        url = self.settings.get("database", {}).get("peewee_url", f"sqliteext:///{self.data_dir}/ingest.sqlite3")
        database = make_database(url)
        try:
            with IngestState.bind_ctx(database):
                return create_state_response(IngestState.get_by_id(job_id))
        finally:
            database.close()

    def wait_complete_or(self, job_id: int, condition, timeout: float = 60) -> dict[str, Any]:
        """Poll get_state until ``condition(state)`` holds or the job is complete; return that state."""
        def reached():
            body = self.state(job_id).json()
            return body if body.get("complete") or condition(body) else None

        return wait_for(reached, timeout, f"job {job_id} to reach a condition", interval=0.05)

    def wait_complete(self, job_id: int, timeout: float = 60) -> dict[str, Any]:
        """Poll get_state until the job is complete; return its final state."""
        def done():
            body = self.state(job_id).json()
            return body if body.get("complete") else None

        try:
            return wait_for(done, timeout, f"job {job_id} to complete", interval=0.1)
        except AssertionError as exc:
            log = (self.worker or self.server).log()[-4000:]
            raise AssertionError(f"{exc}; last state {self.state(job_id).json()}\nworker log:\n{log}") from None

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

