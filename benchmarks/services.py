"""The services under test: the published 0.4.1 from PyPI and this repository's, each with a worker."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from measure import peak_rss_mb, process_tree, reset_peak, stage_spans
from playhouse import db_url

from tests.support.bundles import file_object, transaction_metadata, write_tar
from tests.support.procs import Proc, free_port, run, wait_for
from tests.support.stack import CPCONFIG

LEGACY = Path.home() / ".cache" / "pacifica-ingest-tests" / "legacy-0.4.1"

# The CherryPy config of the two ingest services compared (CPCONFIG, from tests.support.stack):
# the address, the port, the dispatcher, and no body size cap (CherryPy's 100 MB would refuse the
# 1 GiB shape). Otherwise each runs its server on its own defaults (0.4.1: CherryPy's 10 threads;
# ours: its built-in 32 threads and 300 s socket timeout); the peers (uniqueid, policy, metadata,
# archive interface) run with theirs too (tests/support/published.py).


def legacy_venv() -> Path:
    """The published pacifica-ingest 0.4.1 in a throwaway virtualenv (built once); return its bin/."""
    if not (LEGACY / "installed-bench").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LEGACY)], check=True)
        # Celery's Redis transport needs redis and packaging, which 0.4.1 does not declare.
        subprocess.run([str(LEGACY / "bin" / "pip"), "install", "-q", "pacifica-ingest==0.4.1", "psycopg2-binary",
                        "redis", "packaging"], check=True)
        (LEGACY / "installed-bench").write_text("0.4.1")
    return LEGACY / "bin"


def make_bundle(path: Path, count: int, size: int) -> int:
    """Write a bundle of ``count`` random files of ``size`` bytes, streamed to disk; return its size."""
    metadata = transaction_metadata()
    members = []
    for number in range(count):
        data = os.urandom(size)
        metadata.append(file_object(f"data/d{number // 1000}", f"f{number}.bin", data))
        members.append((f"data/d{number // 1000}/f{number}.bin", data))
    write_tar(str(path), members, metadata)
    return path.stat().st_size


class Service:
    """One ingest service (web server and Celery worker) with its own config, database and Redis databases."""

    def __init__(self, name: str, root: Path, python_bin: Path, settings: dict) -> None:
        self.name = name
        self.root = root
        self.bin = python_bin
        self.port = free_port()
        self.settings = settings
        self.server: Proc | None = None
        self.worker: Proc | None = None
        self.profilers: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.ini"
        config.write_text("\n".join(f"[{section}]\n" + "\n".join(f"{k} = {v}" for k, v in values.items())
                                    for section, values in self.settings.items()) + "\n")
        cpconfig = self.root / "cp.ini"
        cpconfig.write_text(CPCONFIG.format(port=self.port))
        env = {"INGEST_CONFIG": str(config), "INGEST_DATA_DIR": str(self.root / "data")}
        synced = run([str(self.bin / "pacifica-ingest-cmd"), "dbsync"], env=env, cwd=str(self.root))
        if synced.returncode != 0:
            raise RuntimeError(f"{self.name} dbsync failed: {synced.stderr}")
        self.server = Proc(f"{self.name}-server", [str(self.bin / "pacifica-ingest"), "--cp-config", str(cpconfig),
                                                  "-p", str(self.port), "-a", "127.0.0.1"],
                           self.root / "server.log", env=env, cwd=str(self.root)).start()
        self.worker = Proc(f"{self.name}-worker", [str(self.bin / "celery"), "-A", "pacifica.ingest.tasks", "worker",
                                                  "-c", "2", "-l", "WARNING", "--without-gossip", "--without-mingle"],
                           self.root / "worker.log", env=env, cwd=str(self.root)).start()
        self.server.wait_http(self.url + "/", 60)

    def profile(self, out: Path) -> None:
        """Sample the web server and the workers with py-spy until ``stop()``; flame graphs go to ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        for role, proc in (("web", self.server), ("worker", self.worker)):
            self.profilers.append(subprocess.Popen(
                [str(spy), "record", "--subprocesses", "--idle", "-r", "100", "-f", "raw",
                 "-o", str(out / f"{self.name}-{role}.txt"), "-p", str(proc.popen.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for profiler in self.profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        for proc in (self.server, self.worker):
            if proc is not None:
                proc.stop()

    def _pids(self) -> tuple[list[int], list[int]]:
        return process_tree(self.server.popen.pid), process_tree(self.worker.popen.pid)

    def upload(self, bundle: Path, timeout: float) -> int:
        """POST ``bundle`` to /upload in 1 MiB writes (requests would write 16 KiB at a time); return the job id."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, blocksize=1 << 20)
        try:
            with open(bundle, "rb") as body:
                connection.request("POST", "/upload", body=body, headers={
                    "Content-Type": "application/octet-stream", "Content-Length": str(bundle.stat().st_size)})
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"{self.name} upload: HTTP {response.status}: {answer[:500]!r}")
        return json.loads(answer)["job_id"]

    def ingest(self, bundle: Path, timeout: float = 1800) -> dict:
        """Upload ``bundle`` and wait for its job; return the seconds taken and the peak memory."""
        os.sync()  # the previous run's dirty pages must not be written back during this one
        web, workers = self._pids()
        reset_peak(web + workers)
        started = time.perf_counter()
        job_id = self.upload(bundle, timeout)
        uploaded = time.perf_counter()
        session = requests.Session()

        def done():
            state = session.get(self.url + "/get_state", params={"job_id": job_id}, timeout=30).json()
            finished = state["state"] != "OK" or (state["task"] == "ingest metadata" and float(
                state["task_percent"]) >= 100)
            return state if finished else None

        state = wait_for(done, timeout, f"{self.name} job {job_id}", interval=0.05)
        finished = time.perf_counter()
        if state["state"] != "OK":
            # A failed job is a result too: it is counted and left out of the medians.
            return {"failed": f"{state['task']}: {str(state['exception'])[-300:]}", "job_id": job_id}
        return {"upload_s": uploaded - started, "end_to_end_s": finished - started, "job_id": job_id,
                "web_rss_mb": max(peak_rss_mb(pid) for pid in web),
                "worker_rss_mb": max(peak_rss_mb(pid) for pid in workers),
                "stages_s": self.stage_seconds(job_id)}

    def stage_seconds(self, job_id: int) -> dict[str, float]:
        """Seconds from each stage's first event to the next one's, from the job's history in
        the service's database (get_state rounds times to the second; 0.4.1 keeps no history)."""
        if self.name == "0.4.1":
            return {}
        database = db_url.connect(self.settings["database"]["peewee_url"])
        try:
            rows = database.execute_sql("SELECT task, time FROM ingeststateevent WHERE job_id = %s ORDER BY event_id",
                                        (job_id,)).fetchall()
        finally:
            database.close()
        return stage_spans(list(rows))
