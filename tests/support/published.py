"""The real published Pacifica services, started as their own documentation deploys them.

uniqueid 0.5.1, policy 0.8.3 and metadata 0.13.0 run under their own CherryPy servers with
their default settings on PostgreSQL; the metadata service is seeded with its own test data
(``tests/test_files/loadit_test.py`` of its sdist), as upstream CI does. The archive interface
0.4.2 runs in one of its documented deployments: its CherryPy server (10 request threads), or
uWSGI ``--http-socket`` with several processes, or uWSGI ``--http11-socket``. Only the
request-body size limit is lifted; nothing else is configured away from its default.

All four live in one throwaway virtualenv, built once and cached (``PACIFICA_PEERS_VENV``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import requests

from . import services
from .legacy import legacy_venv
from .procs import Proc, free_port, run

PEER_REQUIREMENTS = ("pacifica-uniqueid==0.5.1", "pacifica-policy==0.8.3", "pacifica-metadata==0.13.0",
                     "pacifica-archiveinterface==0.4.2",
                     # metadata 0.13.0 needs these and does not declare them; uWSGI is the
                     # archive interface's documented Linux deployment.
                     "peewee<4", "pytz", "psycopg2-binary", "uwsgi")
METADATA_SDIST = "pacifica-metadata==0.13.0"
CACHE = Path(os.environ.get("PACIFICA_PEERS_CACHE", Path.home() / ".cache" / "pacifica-ingest-tests"))

# The seed data of pacifica-metadata's own tests: users 10 and 11, project '1234a', instrument 54.
SEED_SUBMITTER = 10
SEED_PROJECT = "1234a"
SEED_INSTRUMENT = 54
# Policy's administrators: user 10 of the seed, as upstream CI configures it.
ADMIN_USER_ID = "10"

# The services' CherryPy routing, as their own server.conf files set it, and no body-size limit.
CPCONFIG = """[global]
log.screen: True
server.max_request_body_size: 0

[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
tools.response_headers.on: True
tools.response_headers.headers: [('Content-Type', 'application/json')]
"""


def peers_venv() -> Path:
    """The virtualenv holding the four published services (built once, then cached)."""
    return legacy_venv(CACHE / "published-peers", *PEER_REQUIREMENTS)


def metadata_test_files() -> Path:
    """The seed data directory of the published pacifica-metadata sdist (downloaded once)."""
    target = CACHE / "metadata-sdist"
    files = target / "test_files"
    if (files / "loadit_test.py").exists():
        return files
    target.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d",
         str(target), METADATA_SDIST], check=True, timeout=600)
    sdist = next(target.glob("pacifica-metadata-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/tests/test_files/" in m.name and m.isfile()]
        for member in members:
            member.name = "test_files/" + member.name.split("/tests/test_files/", 1)[1]
        archive.extractall(target, members=members, filter="data")
    return files


def _bin(name: str) -> str:
    return str(peers_venv() / "bin" / name)


class PublishedPeers:
    """uniqueid, policy and metadata, each its own process on its own PostgreSQL database."""

    def __init__(self, root: Path, name: str = "published") -> None:
        self.root = root
        self.name = name
        self.procs: list[Proc] = []
        self.ports = {peer: free_port() for peer in ("uniqueid", "metadata", "policy")}

    def url(self, peer: str) -> str:
        return f"http://127.0.0.1:{self.ports[peer]}"

    @property
    def uniqueid_url(self) -> str:
        return self.url("uniqueid")

    @property
    def policy_url(self) -> str:
        return self.url("policy") + "/ingest"

    @property
    def metadata_url(self) -> str:
        return self.url("metadata") + "/ingest"

    def _env(self, peer: str, **extra: str) -> dict[str, str]:
        home = self.root / peer
        home.mkdir(parents=True, exist_ok=True)
        # HOME keeps each service's default config paths (~/.pacifica-*) out of the real home.
        return {"HOME": str(home), "PYTHONPATH": "", **extra}

    def _start(self, peer: str, argv: list[str], env: dict[str, str], ready: str) -> None:
        cpconfig = self.root / f"{peer}-cp.ini"
        cpconfig.write_text(CPCONFIG)
        proc = Proc(f"{self.name}-{peer}", [*argv, "-p", str(self.ports[peer]), "-a", "127.0.0.1",
                                            "--cpconfig" if peer != "policy" else "-c", str(cpconfig)],
                    self.root / f"{peer}.log", env=env, cwd=str(self.root / peer)).start()
        self.procs.append(proc)
        proc.wait_http(self.url(peer) + ready, 120)

    def start(self) -> PublishedPeers:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        prefix = f"pacifica_peer_{self.name}"
        uniqueid_env = self._env("uniqueid", PEEWEE_URL=services.create_postgres_db(f"{prefix}_uniqueid"))
        metadata_env = self._env("metadata", PEEWEE_URL=services.create_postgres_db(f"{prefix}_metadata"))
        for peer, env in (("uniqueid", uniqueid_env), ("metadata", metadata_env)):
            run([_bin(f"pacifica-{peer}-cmd"), "dbsync"], env=env, check=True, timeout=300, cwd=str(self.root))
        self._start("uniqueid", [_bin("pacifica-uniqueid")], uniqueid_env, "/getid?range=1&mode=probe")
        self._start("metadata", [_bin("pacifica-metadata")], metadata_env, "/users")
        seeded = run([_bin("python"), str(metadata_test_files() / "loadit_test.py")],
                     env={**metadata_env, "METADATA_URL": self.url("metadata")}, timeout=600,
                     cwd=str(self.root))
        assert seeded.returncode == 0, f"seeding the metadata service failed:\n{seeded.stderr[-3000:]}"
        policy_env = self._env("policy", METADATA_URL=self.url("metadata"),
                               STATUS_URL=self.url("metadata") + "/groups", ADMIN_USER_ID=ADMIN_USER_ID)
        self._start("policy", [_bin("pacifica-policy")], policy_env, "/status/users/search/dmlb2001/simple")
        # The seed already holds Files 103/104 and Transactions 67-72: move both counters past them.
        for mode in ("file", "upload_job"):
            requests.get(self.uniqueid_url + "/getid", params={"range": 1000, "mode": mode}, timeout=30)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def take_id(self, mode: str) -> int:
        """Take one id of ``mode`` from uniqueid."""
        response = requests.get(self.uniqueid_url + "/getid", params={"range": 1, "mode": mode}, timeout=30)
        response.raise_for_status()
        return response.json()["startIndex"]

    def _get(self, path: str, **params) -> list[dict]:
        response = requests.get(self.url("metadata") + path, params=params, timeout=30)
        return response.json() if response.status_code == 200 else []

    def document(self, job_id: int) -> list[dict] | None:
        """What the metadata service holds for transaction ``job_id``, in the shape of the document
        that was sent (``Transactions._id``, the TransSIP values and one ``Files`` object per file),
        or None if it holds no such transaction."""
        if not self._get("/transactions", _id=job_id):
            return None
        document = [{"destinationTable": "Transactions._id", "value": job_id}]
        for sip in self._get("/transsip", _id=job_id):
            document += [{"destinationTable": f"Transactions.{key}", "value": sip.get(key)}
                         for key in ("submitter", "project", "instrument")]
        for row in self._get("/files", transaction=job_id):
            document.append({"destinationTable": "Files", **row})
        return document


class PublishedArchive:
    """The published archive interface (posix backend) in one of its documented deployments.

    ``deployment`` is ``cherrypy`` (its own server, default 10 request threads),
    ``uwsgi-http`` (``--http-socket``, ``processes`` x 1 thread, as its Linux deployment) or
    ``uwsgi-http11`` (``--http11-socket``, keep-alive).
    """

    DEPLOYMENTS = ("cherrypy", "uwsgi-http", "uwsgi-http11")

    def __init__(self, root: Path, deployment: str = "cherrypy", processes: int = 4) -> None:
        if deployment not in self.DEPLOYMENTS:
            raise ValueError(deployment)
        self.root = root
        self.deployment = deployment
        self.processes = processes
        self.prefix = root / "archive"
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PublishedArchive:
        self.prefix.mkdir(parents=True, exist_ok=True)
        cpconfig = self.root / "archive-cp.ini"
        cpconfig.write_text(CPCONFIG)
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        env = {"HOME": str(home), "PYTHONPATH": "", "PAI_PREFIX": str(self.prefix),
               "ARCHIVEINTERFACE_CPCONFIG": str(cpconfig)}
        if self.deployment == "cherrypy":
            argv = [_bin("pacifica-archiveinterface"), "--cherrypy-config", str(cpconfig), "-p", str(self.port),
                    "-a", "127.0.0.1", "--prefix", str(self.prefix)]
        else:
            socket = "--http-socket" if self.deployment == "uwsgi-http" else "--http11-socket"
            argv = [_bin("uwsgi"), socket, f"127.0.0.1:{self.port}", "--master", "--processes",
                    str(self.processes), "--threads", "1", "--module", "pacifica.archiveinterface.wsgi",
                    "--die-on-term", "--need-app"]
        self.proc = Proc(f"archive-{self.deployment}", argv, self.root / "archive.log", env=env,
                         cwd=str(self.root)).start()
        self.proc.wait_http(self.url + "/", 60) if self.deployment == "cherrypy" else self._wait_uwsgi()
        return self

    def _wait_uwsgi(self) -> None:
        # The archive interface answers GET / with 500 (no file named ''), so wait for any answer.
        def up() -> bool:
            if not self.proc.alive():
                raise AssertionError(f"archive interface exited:\n{self.proc.log()[-3000:]}")
            requests.head(self.url + "/1", timeout=2)
            return True

        from .procs import wait_for

        wait_for(up, 60, f"archive interface ({self.deployment}) at {self.url}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def file(self, file_id: int) -> Path:
        """Where the posix backend keeps ``file_id``."""
        return self.prefix / str(file_id)

    def exists(self, file_id: int) -> bool:
        """Whether the archive interface reports ``file_id`` (HEAD answers 2xx)."""
        return requests.head(f"{self.url}/{int(file_id)}", timeout=30).status_code < 300


def published_client_venv(requirement: str, *extra: str) -> Path:
    """A throwaway virtualenv holding a published client (uploader, cli), cached."""
    name = requirement.replace("==", "-").replace(">=", "-")
    return legacy_venv(CACHE / name, requirement, *extra)


def run_published(venv: Path, argv: list[str], env: dict[str, str] | None = None, timeout: float = 300,
                  cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a published program from ``venv`` outside this checkout."""
    return run([str(venv / "bin" / argv[0]), *argv[1:]], env={"PYTHONPATH": "", **(env or {})},
               timeout=timeout, cwd=cwd)
