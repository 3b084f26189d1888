"""The web server reaches a server database through a small pool: many clients at once never
hold more than the pool's connections, whatever the number of request threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from pacifica.ingest.database import POOL_DEFAULTS
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
