"""The real services the tests use: PostgreSQL, MariaDB, RabbitMQ and Redis on loopback.

The suite is a guest on a machine that may hold other people's data and other runs of this
suite. Every database and vhost it makes carries this run's name (``RUN``), and its Redis
databases are those of a Redis server of its own (``_PrivateRedis``). It drops and deletes only
those, and all of them when the run ends (``cleanup``).
A service that is not running fails the test loudly with how to start it.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time

import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
RABBIT_HOST = os.environ.get("TEST_RABBIT_HOST", "127.0.0.1")

# This run's name, in every database and vhost it makes: two runs on one host never share one.
RUN = os.environ.get("PACIFICA_TEST_RUN") or f"r{os.getpid():x}{secrets.token_hex(2)}"

START_HINTS = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "rabbitmq": "rabbitmq-server -detached",
}

# What this run made, to be removed when it ends: (kind, name or number).
_made: list[tuple[str, str | int]] = []
_lock = threading.RLock()


def _unavailable(service: str, exc: Exception) -> None:
    pytest.fail(f"{service} is required by this test and is not reachable ({exc}); "
                f"start it with: {START_HINTS[service]}", pytrace=False)


def run_name(name: str) -> str:
    """``name`` made this run's own (PostgreSQL and MariaDB take up to 63 characters)."""
    suffix = f"_{RUN}"
    return name[:63 - len(suffix)] + suffix


def _remember(kind: str, name: str | int) -> None:
    with _lock:
        if not _made:
            atexit.register(cleanup)
        if (kind, name) not in _made:
            _made.append((kind, name))


def create_postgres_db(name: str) -> str:
    """A new, empty PostgreSQL database named ``name`` for this run; return its peewee URL."""
    import psycopg2

    name = run_name(name)
    try:
        conn = psycopg2.connect(host=PG_HOST, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        _unavailable("postgresql", exc)
    conn.autocommit = True
    with conn.cursor() as cur:
        # Only a database of this run is ever dropped: one made earlier in it under the same name.
        if ("postgres", name) in _made:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    _remember("postgres", name)
    return f"postgres://postgres@{PG_HOST}:5432/{name}"


def create_mysql_db(name: str) -> str:
    """A new, empty MariaDB/MySQL database named ``name`` for this run; return its peewee URL."""
    import pymysql

    name = run_name(name)
    try:
        conn = pymysql.connect(host=MYSQL_HOST, user="root", password="", connect_timeout=5, autocommit=True)
    except pymysql.MySQLError as exc:
        _unavailable("mariadb", exc)
    with conn.cursor() as cur:
        if ("mysql", name) in _made:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    _remember("mysql", name)
    return f"mysql://root@{MYSQL_HOST}:3306/{name}"


def database_url(kind: str, name: str, tmp_path) -> str:
    """Return the URL of a new, empty database of ``kind`` (sqlite, postgres or mysql)."""
    if kind == "sqlite":
        return f"sqliteext:///{tmp_path}/{name}.sqlite3"
    if kind == "postgres":
        return create_postgres_db(name)
    if kind == "mysql":
        return create_mysql_db(name)
    raise ValueError(kind)


def _rabbitmqctl() -> str:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found: RabbitMQ is required (apt-get install rabbitmq-server)", pytrace=False)
    return ctl


def rabbitmq_vhost(vhost: str) -> str:
    """A new, empty RabbitMQ vhost named ``vhost`` for this run, open to guest; return the broker URL."""
    ctl = _rabbitmqctl()
    vhost = run_name(vhost)
    if ("vhost", vhost) in _made:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)
    created = subprocess.run([ctl, "add_vhost", vhost], capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        _unavailable("rabbitmq", RuntimeError(created.stderr.strip() or created.stdout.strip()))
    _remember("vhost", vhost)
    subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   capture_output=True, timeout=60, check=True)
    return f"pyamqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"


class _PrivateRedis:
    """This run's own Redis server, on a free loopback port, started when first needed.

    Redis names its databases by number, 16 by default and shared by everyone on a machine, and
    one run of the suite uses about ten: a run of its own server is the only way two runs (or a
    developer's own data in the machine's Redis) never meet. It is the real redis-server, with
    no persistence, and it is stopped and its directory removed when the run ends.
    """

    DATABASES = 256

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.directory = ""
        self.next_number = 0

    def url(self) -> str:
        with _lock:
            if self.proc is None:
                self._start()
            self.next_number += 1
            if self.next_number >= self.DATABASES:
                pytest.fail(f"this run used all {self.DATABASES} databases of its Redis", pytrace=False)
            return f"redis://127.0.0.1:{self.port}/{self.next_number}"

    def _start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is required: the suite runs a Redis of its own "
                        "(apt-get install redis-server)", pytrace=False)
        import tempfile

        self.directory = tempfile.mkdtemp(prefix=f"pacifica-tests-redis-{RUN}-")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--databases", str(self.DATABASES), "--dir", self.directory, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    if self.proc.poll() is not None:
                        pytest.fail(f"redis-server exited at once ({self.proc.returncode})", pytrace=False)
                    time.sleep(0.05)
            else:
                pytest.fail(f"redis-server did not answer on port {self.port}", pytrace=False)
        finally:
            client.close()
        _remember("redis-server", self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


_REDIS = _PrivateRedis()


def redis_db() -> str:
    """A Redis database of this run alone (in this run's own Redis server); return its URL."""
    return _REDIS.url()


def cleanup() -> None:
    """Remove every database and vhost this run made and empty the Redis databases it claimed
    (once; later calls do nothing)."""
    with _lock:
        made = list(_made)
        _made.clear()
    for kind, name in made:
        try:
            _remove(kind, name)
        except Exception as exc:  # noqa: BLE001 - one leftover must not keep the others
            print(f"tests: could not remove {kind} {name}: {exc}")


def _remove(kind: str, name: str | int) -> None:
    if kind == "postgres":
        import psycopg2

        conn = psycopg2.connect(host=PG_HOST, user="postgres", dbname="postgres", connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
    elif kind == "mysql":
        import pymysql

        conn = pymysql.connect(host=MYSQL_HOST, user="root", password="", connect_timeout=5, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
    elif kind == "vhost":
        subprocess.run([_rabbitmqctl(), "delete_vhost", str(name)], capture_output=True, timeout=60)
    elif kind == "redis-server":
        _REDIS.stop()
