"""Fixtures shared by every tier: the test peers, the published archive interface, ingest stacks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import services
from tests.support.legacy import legacy_venv
from tests.support.proxy import TcpProxy
from tests.support.published import PublishedArchive, PublishedPeers
from tests.support.stack import Stack

# Each integration stack: (database, broker, archive deployment). Every database meets every
# broker; "embedded" is the zero-configuration setup (embedded peers, queue and worker, SQLite in
# its data directory). The HTTP stacks use the published peers and the published archive
# interface under its own CherryPy server; "postgres-redis-uwsgi" uses it under uWSGI
# --http-socket with several processes, its documented Linux deployment.
STACKS = {
    "sqlite-redis": ("sqlite", "redis", "cherrypy"),
    "sqlite-rabbitmq": ("sqlite", "rabbitmq", "cherrypy"),
    "postgres-rabbitmq": ("postgres", "rabbitmq", "cherrypy"),
    "postgres-redis": ("postgres", "redis", "cherrypy"),
    "mysql-rabbitmq": ("mysql", "rabbitmq", "cherrypy"),
    "mysql-redis": ("mysql", "redis", "cherrypy"),
    "postgres-redis-uwsgi": ("postgres", "redis", "uwsgi-http"),
    "embedded": (None, None, None),
}
HTTP_STACKS = [name for name, (db, _broker, _archive) in STACKS.items() if db is not None]

_THROWAWAY_DATA: list[str] = []


def pytest_configure(config):
    """Keep every process the tests start out of the real ~/.pacifica-ingest: a configuration
    that does not name its data directory gets a throwaway one (removed when the run ends)."""
    if "INGEST_DATA_DIR" not in os.environ:
        os.environ["INGEST_DATA_DIR"] = tempfile.mkdtemp(prefix=f"pacifica-ingest-tests-{services.RUN}-")
        _THROWAWAY_DATA.append(os.environ["INGEST_DATA_DIR"])


class Peers:
    """The published uniqueid, policy and metadata services of a session, each reached through a
    loopback proxy that a test can stop (the service is down) and whose requests it can read."""

    def __init__(self, root: Path) -> None:
        self.published = PublishedPeers(root).start()
        self.uniqueid = TcpProxy("127.0.0.1", self.published.ports["uniqueid"]).start()
        self.policy = TcpProxy("127.0.0.1", self.published.ports["policy"]).start()
        self.metadata = TcpProxy("127.0.0.1", self.published.ports["metadata"]).start()

    def policy_requests_for(self, job_id: int, header: bytes = b"X-Http-Authed-User", since: int = 0) -> list[bytes]:
        """The ``header`` values of the policy requests that asked about job ``job_id`` (made
        after ``since`` bytes of requests: embedded stacks each count their job ids from 1)."""
        marker = json.dumps({"destinationTable": "Transactions._id", "value": int(job_id)}).encode()
        values = []
        for request in bytes(self.policy.requests[since:]).split(b"POST /ingest ")[1:]:
            if marker in request:
                head = request.split(b"\r\n\r\n", 1)[0]
                values += [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                           if line.lower().startswith(header.lower() + b":")]
        return values

    def next_id(self, mode: str) -> int:
        """Take one id of ``mode`` from the real uniqueid (to see how many were taken meanwhile)."""
        return self.published.take_id(mode)

    def stop(self) -> None:
        for proxy in (self.uniqueid, self.policy, self.metadata):
            proxy.stop()
        self.published.stop()


@pytest.fixture(scope="session")
def peers(tmp_path_factory):
    running = Peers(tmp_path_factory.mktemp("published-peers"))
    yield running
    running.stop()


LEGACY_VERSION = "0.4.1"


@pytest.fixture(scope="session")
def legacy_ingest() -> Path:
    """A throwaway virtualenv holding the published pacifica-ingest 0.4.1 (built once, then cached)."""
    venv = Path(os.environ.get("PACIFICA_INGEST_LEGACY_VENV",
                               Path.home() / ".cache" / "pacifica-ingest-tests" / f"legacy-{LEGACY_VERSION}"))
    return legacy_venv(venv, f"pacifica-ingest=={LEGACY_VERSION}", "psycopg2-binary")


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    interface = PublishedArchive(tmp_path_factory.mktemp("archiveinterface"), "cherrypy").start()
    yield interface
    interface.stop()


_backends: list[str] = []


def broker_urls(kind: str, name: str) -> tuple[str, str]:
    """Return (broker_url, backend_url) of a fresh broker namespace; results always go to Redis.

    Every stack keeps its Celery results in one Redis database of this run: the result keys are
    task ids, unique everywhere, and Redis has only 16 databases for the brokers of every run.
    """
    if not _backends:
        _backends.append(services.redis_db())
    backend = _backends[0]
    if kind == "redis":
        return services.redis_db(), backend
    return services.rabbitmq_vhost(f"pacifica_ingest_test_{name}"), backend


def stack_settings(root: Path, db_url: str, broker: str, backend: str, peers: Peers,
                   archive: PublishedArchive) -> dict[str, dict[str, str]]:
    return {
        "ingest": {"data_dir": str(root / "data"), "volume_path": str(root / "volume"), "transfer_size": "1 Mb",
                   "http_timeout": "10", "http_retries": "2", "stage_retries": "1", "retry_delay": "0.2"},
        "uniqueid": {"url": peers.uniqueid.url},
        "policy": {"ingest_url": peers.policy.url + "/ingest"},
        "archiveinterface": {"url": archive.url},
        "metadata": {"ingest_url": peers.metadata.url + "/ingest"},
        "celery": {"broker_url": broker, "backend_url": backend},
        "database": {"peewee_url": db_url, "connect_attempts": "3", "connect_wait": "1"},
    }


def make_stack(name: str, db: str, broker_kind: str, root: Path, peers: Peers, archive: PublishedArchive) -> Stack:
    """Provision a database and broker namespace and write the stack's config (nothing started)."""
    root.mkdir(parents=True, exist_ok=True)
    db_url = services.database_url(db, f"pacifica_ingest_test_{name.replace('-', '_')}", root)
    broker, backend = broker_urls(broker_kind, name.replace("-", "_"))
    stack = Stack(name=name, root=root, settings=stack_settings(root, db_url, broker, backend, peers, archive))
    stack.write_config()
    return stack


def embedded_stack(name: str, root: Path, **ingest: str) -> Stack:
    """Write the config of a fully embedded stack (only its data directory is set)."""
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(name=name, root=root, settings={"ingest": {"data_dir": str(root / "data"), **ingest}})
    stack.write_config()
    return stack


@contextlib.contextmanager
def own_stack(name: str, kind: str, root: Path, peers: Peers, archive: PublishedArchive, broker: str = "redis",
              sections: dict[str, dict[str, str]] | None = None):
    """A running stack of a test module's own: ``embedded``, or ``published`` (PostgreSQL, ``broker``,
    the published peers and archive interface); stopped when the block ends. For what a module
    must not share: its database's quotas, or an audit of everything in its record. ``sections``
    adds settings to its config file."""
    if kind == "embedded":
        stack = embedded_stack(name, root)
    else:
        stack = make_stack(name, "postgres", broker, root, peers, archive)
        stack.peers, stack.archive = peers, archive
    for section, values in (sections or {}).items():
        stack.settings.setdefault(section, {}).update(values)
    stack.write_config()
    if not stack.embedded:
        synced = stack.cmd("dbsync")
        assert synced.returncode == 0, synced.stderr
    try:
        stack.start_server()
        if not stack.embedded:
            stack.start_worker()
        yield stack
    finally:
        stack.stop()


class StackRegistry:
    """Stacks started once per session and shared by the fixtures that ask for them."""

    def __init__(self, factory_root, peers, archive) -> None:
        self.factory_root = factory_root
        self.peers = peers
        self.archive = archive
        self.running: dict[str, Stack] = {}
        self.archives: dict[str, PublishedArchive] = {}

    def archive_for(self, deployment: str) -> PublishedArchive:
        """The session's archive interface in ``deployment`` (each started once, when first needed)."""
        if deployment == "cherrypy":
            return self.archive
        if deployment not in self.archives:
            self.archives[deployment] = PublishedArchive(self.factory_root.mktemp(deployment), deployment).start()
        return self.archives[deployment]

    def get(self, name: str) -> Stack:
        if name not in self.running:
            db, broker, deployment = STACKS[name]
            root = self.factory_root.mktemp(name)
            if db is None:
                stack = embedded_stack(name, root)
            else:
                archive = self.archive_for(deployment)
                stack = make_stack(name, db, broker, root, self.peers, archive)
                stack.peers, stack.archive = self.peers, archive
            # /move takes sources from the tests' own temporary directories only.
            stack.settings["ingest"]["move_roots"] = str(self.factory_root.getbasetemp())
            # Their callback receivers listen on loopback, which only an operator's allow-list opens.
            stack.settings["ingest"]["callback_hosts"] = "127.0.0.1"
            stack.write_config()
            if db is not None:
                synced = stack.cmd("dbsync")
                assert synced.returncode == 0, synced.stderr
            try:
                stack.start_server()
                if db is not None:
                    stack.start_worker()
            except BaseException:
                stack.stop()
                raise
            self.running[name] = stack
        return self.running[name]

    def stop(self) -> None:
        for stack in self.running.values():
            stack.stop()
        for archive in self.archives.values():
            archive.stop()


@pytest.fixture(scope="session")
def stacks(tmp_path_factory, peers, archive):
    registry = StackRegistry(tmp_path_factory, peers, archive)
    yield registry
    registry.stop()


@pytest.fixture(scope="session", params=list(STACKS))
def stack(request, stacks):
    """A running ingest stack for each database and broker, and the embedded one."""
    return stacks.get(request.param)


@pytest.fixture(scope="session", params=HTTP_STACKS)
def http_stack(request, stacks):
    """A running ingest stack that uses the published peers and archive interface."""
    return stacks.get(request.param)


@contextlib.contextmanager
def bound_database(kind: str, tmp_path: Path, proxy=None, prefix: str = "pacifica_ingest_unit"):
    """Bind ``proxy`` (ingest's ``orm.DB`` by default) to a new, empty database of ``kind`` for
    the duration of the block."""
    from pacifica.core.database import make_database
    from pacifica.ingest.compat import orm

    proxy = proxy or orm.DB
    url = services.database_url(kind, f"{prefix}_{kind}", tmp_path)
    db = make_database(url)
    previous = proxy.obj
    proxy.initialize(db)
    db.connect()
    try:
        yield db
    finally:
        db.close()
        proxy.initialize(previous)


def _engines() -> list[str]:
    """The database engines the database fixtures run on: ``PACIFICA_TEST_DATABASES``, a comma
    list of sqlite, postgres and mysql. SQLite alone by default, the cheapest engine (as peewee's
    own suite does); ``tools/test`` (and so CI) names all three."""
    known = ("sqlite", "postgres", "mysql")
    names = [name.strip() for name in os.environ.get("PACIFICA_TEST_DATABASES", "sqlite").split(",")]
    unknown = [name for name in names if name not in known]
    if unknown or not any(names):
        raise pytest.UsageError(f"PACIFICA_TEST_DATABASES names {unknown or names}: use a comma list of {known}")
    return names


ENGINES = _engines()


@pytest.fixture(params=ENGINES)
def database(request, tmp_path):
    """An empty database of each kind, bound to ``orm.DB`` for the test (closed afterwards)."""
    with bound_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture(params=ENGINES)
def cart_database(request, tmp_path):
    """An empty database of each kind, bound to cartd's ``orm.DB`` for the test."""
    from pacifica.cartd.compat.orm import DB

    with bound_database(request.param, tmp_path, DB, "pacifica_cartd_unit") as db:
        yield db


@pytest.fixture
def cli_stack(request, tmp_path, peers, archive):
    """A configuration (no processes) on each database, for running ``pacifica-ingest-cmd``."""
    kind = request.param
    db_url = services.database_url(kind, f"pacifica_ingest_cli_{kind}", tmp_path)
    settings = stack_settings(tmp_path, db_url, "memory://", "cache+memory://", peers, archive)
    stack = Stack(name=f"cli-{kind}", root=tmp_path, settings=settings)
    stack.write_config()
    return stack


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """No silent skips: a skipped test fails the run (every service the suite needs must be up).
    Every database, vhost and Redis database of this run is removed (the stacks have stopped by
    now), and so is the throwaway data directory; so is the temporary directory of a run that passed."""
    services.cleanup()
    for path in _THROWAWAY_DATA:
        shutil.rmtree(path, ignore_errors=True)
    if _skipped and session.exitstatus == 0:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED: {len(_skipped)} tests were skipped; this suite allows none", red=True)
    # A run that passed leaves no temporary directory behind (one that failed keeps its own to
    # look at). Not pytest's retention policy "failed": it removes each passing test's directory
    # at once, while the service's process-wide state (its metrics directory) may still point there.
    factory = getattr(session.config, "_tmp_path_factory", None)
    if session.exitstatus == 0 and factory is not None and getattr(factory, "_given_basetemp", None) is None \
            and getattr(factory, "_basetemp", None) is not None:
        shutil.rmtree(factory.getbasetemp(), ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """Say how many cases schemathesis sent to each service (docs/testing.md quotes it)."""
    fuzz = sys.modules.get("tests.support.fuzz")
    if fuzz is not None and fuzz.CASES:
        counts = ", ".join(f"{count} to {service}" for service, count in sorted(fuzz.CASES.items()))
        terminalreporter.write_line(f"schemathesis: {sum(fuzz.CASES.values())} cases ({counts}), every answer checked")
