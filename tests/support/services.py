"""The real services the tests use: PostgreSQL, MariaDB, RabbitMQ and Redis on loopback.

Each test stack gets its own database and its own RabbitMQ vhost or Redis database number.
A service that is not running fails the test loudly with how to start it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
RABBIT_HOST = os.environ.get("TEST_RABBIT_HOST", "127.0.0.1")

START_HINTS = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    "rabbitmq": "rabbitmq-server -detached",
}


def _unavailable(service: str, exc: Exception) -> None:
    pytest.fail(f"{service} is required by this test and is not reachable ({exc}); "
                f"start it with: {START_HINTS[service]}", pytrace=False)


def create_postgres_db(name: str) -> str:
    """(Re)create database ``name`` on PostgreSQL; return its peewee URL."""
    import psycopg2

    try:
        conn = psycopg2.connect(host=PG_HOST, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        _unavailable("postgresql", exc)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"postgres://postgres@{PG_HOST}:5432/{name}"


def create_mysql_db(name: str) -> str:
    """(Re)create database ``name`` on MariaDB/MySQL; return its peewee URL."""
    import pymysql

    try:
        conn = pymysql.connect(host=MYSQL_HOST, user="root", password="", connect_timeout=5, autocommit=True)
    except pymysql.MySQLError as exc:
        _unavailable("mariadb", exc)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
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


def rabbitmq_vhost(vhost: str) -> str:
    """(Re)create an empty RabbitMQ vhost for guest; return the broker URL."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found: RabbitMQ is required (apt-get install rabbitmq-server)", pytrace=False)
    subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)
    created = subprocess.run([ctl, "add_vhost", vhost], capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        _unavailable("rabbitmq", RuntimeError(created.stderr.strip() or created.stdout.strip()))
    subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   capture_output=True, timeout=60, check=True)
    return f"pyamqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"


def redis_db(number: int) -> str:
    """Empty Redis database ``number``; return its URL."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=6379, db=number, socket_connect_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        _unavailable("redis", exc)
    finally:
        client.close()
    return f"redis://{REDIS_HOST}:6379/{number}"
