"""The real services the tests use: PostgreSQL, MariaDB, RabbitMQ and Redis on loopback.

The suite is a guest on a machine that may hold other people's data and other runs of this
suite. Every database and vhost it makes carries this run's name (``RUN``); every Redis
database it uses is one it found empty and claimed (a marker key naming this process). It
drops, deletes and flushes only those, and all of them when the run ends (``cleanup``).
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

import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
RABBIT_HOST = os.environ.get("TEST_RABBIT_HOST", "127.0.0.1")

# This run's name, in every database and vhost it makes: two runs on one host never share one.
RUN = os.environ.get("PACIFICA_TEST_RUN") or f"r{os.getpid():x}{secrets.token_hex(2)}"

START_HINTS = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    "rabbitmq": "rabbitmq-server -detached",
}

# What this run made, to be removed when it ends: (kind, name or number).
_made: list[tuple[str, str | int]] = []
_lock = threading.Lock()


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


# The key that marks a Redis database as taken by a run: its value names the host and process.
CLAIM = "pacifica-tests:claimed-by"
# Database 0 is every Redis client's default: the suite leaves it alone.
REDIS_NUMBERS = range(1, 16)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{RUN}"


def _stale(claim: bytes | None) -> bool:
    """Whether ``claim`` was made by a run on this host whose process is gone."""
    host, _, rest = (claim or b"").decode(errors="replace").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def redis_db() -> str:
    """A Redis database for this run alone: one that was empty (or held only the marker of a
    run whose process is gone), claimed with a marker key; return its URL. Emptied when the
    run ends."""
    import redis

    for number in REDIS_NUMBERS:
        if ("redis", number) in _made:
            continue
        client = redis.Redis(host=REDIS_HOST, port=6379, db=number, socket_connect_timeout=5)
        try:
            if client.set(CLAIM, _owner(), nx=True):
                if client.dbsize() == 1:
                    _remember("redis", number)
                    return f"redis://{REDIS_HOST}:6379/{number}"
                client.delete(CLAIM)  # somebody's data is there: not ours to use
            elif _stale(client.get(CLAIM)):
                client.flushdb()
                if client.set(CLAIM, _owner(), nx=True):
                    _remember("redis", number)
                    return f"redis://{REDIS_HOST}:6379/{number}"
        except redis.RedisError as exc:
            _unavailable("redis", exc)
        finally:
            client.close()
    pytest.fail(f"no free Redis database on {REDIS_HOST}:6379: databases {REDIS_NUMBERS.start}-"
                f"{REDIS_NUMBERS.stop - 1} hold data or belong to other runs of this suite", pytrace=False)


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
    elif kind == "redis":
        import redis

        client = redis.Redis(host=REDIS_HOST, port=6379, db=int(name), socket_connect_timeout=5)
        try:
            if client.get(CLAIM) == _owner().encode():
                client.flushdb()
        finally:
            client.close()
