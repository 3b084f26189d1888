"""The web server reaches a server database through a small pool: many clients at once never
hold more than the pool's connections, whatever the number of request threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import peewee
import psycopg2
import pytest
import requests

from pacifica.core.database import POOL_DEFAULTS, discard, make_database, release
from tests.conftest import make_stack
from tests.support import services
from tests.support.bundles import make_bundle


@pytest.fixture
def web_only(tmp_path, peers, archive):
    """A PostgreSQL stack whose web server alone uses the database (no worker started)."""
    stack = make_stack("pool", "postgres", "redis", tmp_path / "pool", peers, archive)
    synced = stack.cmd("dbsync")
    assert synced.returncode == 0, synced.stderr
    stack.start_server()
    yield stack
    stack.stop()


def _connections(database: str) -> int:
    conn = psycopg2.connect(host=services.PG_HOST, user="postgres", dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_many_clients_share_the_pools_connections(web_only, tmp_path):
    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/a.txt": b"a\n"})
    job_id = web_only.upload(bundle).json()["job_id"]
    database = web_only.settings["database"]["peewee_url"].rsplit("/", 1)[1]

    def poll(_index):
        with requests.Session() as session:
            for _ in range(40):
                response = session.get(web_only.url + "/get_state", params={"job_id": job_id}, timeout=30)
                assert response.status_code == 200, response.text
                assert response.json()["job_id"] == job_id

    with ThreadPoolExecutor(24) as clients:
        list(clients.map(poll, range(24)))
    held = _connections(database)
    assert 1 <= held <= POOL_DEFAULTS["max_connections"], f"the web server holds {held} connections"


def _terminate(database: str) -> int:
    """Kill every server process serving ``database`` (as a PostgreSQL restart would)."""
    conn = psycopg2.connect(host=services.PG_HOST, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                        (database,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def _kill_mysql(url: str, connection_id: int) -> None:
    killer = make_database(url)
    killer.execute_sql(f"KILL {int(connection_id)}")
    discard(killer)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_pool_hands_out_fresh_connections_unchecked_and_replaces_dead_ones(kind):
    """A connection given back moments ago is reused as it is; one that died is found and replaced
    once the recheck time has passed, and after ``discard`` at any time."""
    url = services.create_postgres_db("pacifica_ingest_pool_recheck") if kind == "postgres" \
        else services.create_mysql_db("pacifica_ingest_pool_recheck")
    name = url.rsplit("/", 1)[1]  # the run's own name for it
    database = make_database(url)
    database.RECHECK_AFTER = 0.5
    query = "SELECT 1"

    def backend_id() -> int:
        sql = "SELECT pg_backend_pid()" if kind == "postgres" else "SELECT CONNECTION_ID()"
        value = database.execute_sql(sql).fetchone()[0]
        release(database)
        return value

    first = backend_id()
    assert backend_id() == first, "a connection given back was not reused"
    if kind == "postgres":
        assert _terminate(name) == 1
    else:
        _kill_mysql(url, first)
    # Within the recheck time the dead connection is trusted: the query fails, and discarding it
    # lets the next one connect afresh.
    with pytest.raises(peewee.PeeweeException):
        database.execute_sql(query)
    discard(database)
    second = backend_id()
    assert second != first
    # After the recheck time a dead connection is noticed on checkout and replaced silently.
    if kind == "postgres":
        assert _terminate(name) == 1
    else:
        _kill_mysql(url, second)
    time.sleep(0.6)
    assert backend_id() not in (first, second)
    database.close_all()
