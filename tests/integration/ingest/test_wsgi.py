"""``pacifica.ingest.wsgi.application`` serves the API under a plain WSGI server."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from tests.support.procs import Proc, free_port

SERVE = """
import sys
from wsgiref.simple_server import make_server
from pacifica.ingest.wsgi import application
make_server('127.0.0.1', int(sys.argv[1]), application).serve_forever()
"""


def test_wsgi_application(tmp_path):
    config = tmp_path / "config.cfg"
    config.write_text(f"[ingest]\ndata_dir = {tmp_path}/data\nvolume_path = {tmp_path}\n"
                      f"[database]\npeewee_url = sqliteext:///{tmp_path}/db.sqlite3\n")
    from tests.support.procs import run

    assert run([sys.executable, "-m", "pacifica.ingest", "--help"]).returncode == 0
    synced = run([str(Path(sys.executable).parent / "pacifica-ingest-cmd"), "-c", str(config), "dbsync"])
    assert synced.returncode == 0, synced.stderr
    port = free_port()
    server = Proc("wsgi", [sys.executable, "-c", SERVE, str(port)], tmp_path / "wsgi.log",
                  env={"INGEST_CONFIG": str(config)}).start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/", 30)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).json() == \
            {"message": "Pacifica Ingest Up and Running"}
        missing = requests.get(f"http://127.0.0.1:{port}/get_state", params={"job_id": 5}, timeout=5)
        assert missing.status_code == 404 and missing.json()["message"] == "job ID 5 does not exist."
    finally:
        server.stop()


def test_wsgi_refuses_an_old_database(tmp_path):
    from pacifica.core.database import make_database
    from pacifica.ingest.db import migrations
    from tests.support.procs import run

    old = make_database(f"sqliteext:///{tmp_path}/old.sqlite3")
    migrations.upgrade(old, target=(1, 0))
    old.close()
    config = tmp_path / "config.cfg"
    config.write_text(f"[ingest]\ndata_dir = {tmp_path}/data\n[database]\npeewee_url = sqliteext:///{tmp_path}/old.sqlite3\n")
    result = run([sys.executable, "-c", "import pacifica.ingest.wsgi"], env={"INGEST_CONFIG": str(config)})
    assert result.returncode != 0
    assert "run 'pacifica-ingest-cmd dbsync' first" in result.stderr


def test_wsgi_creates_the_schema_of_an_empty_database(tmp_path):
    from tests.support.procs import run

    config = tmp_path / "config.cfg"
    config.write_text(f"[ingest]\ndata_dir = {tmp_path}/data\n")
    result = run([sys.executable, "-c", "import pacifica.ingest.wsgi"], env={"INGEST_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    check = run([str(Path(sys.executable).parent / "pacifica-ingest-cmd"), "-c", str(config), "dbchk", "--equal"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_cartd_wsgi_creates_the_schema_of_an_empty_database_and_refuses_an_old_one(tmp_path):
    """``pacifica.cartd.wsgi`` starts up as ``pacifica-cartd`` does (against an empty database, every
    request used to answer 500)."""
    from pacifica.cartd.db import migrations
    from pacifica.core.database import make_database
    from tests.support.procs import run

    config = tmp_path / "cart.ini"
    config.write_text(f"[cartd]\ndata_dir = {tmp_path}/cart\n")
    env = {"CARTD_CONFIG": str(config), "CARTD_CPCONFIG": str(tmp_path / "none.ini")}
    result = run([sys.executable, "-c", "import pacifica.cartd.wsgi"], env=env)
    assert result.returncode == 0, result.stderr
    check = run([str(Path(sys.executable).parent / "pacifica-cartd-cmd"), "-c", str(config), "dbchk", "--equal"],
                env=env)
    assert check.returncode == 0, check.stdout + check.stderr

    old = make_database(f"sqliteext:///{tmp_path}/old.sqlite3")
    migrations.SCHEMA.upgrade(old, target=(1, 0))
    old.close()
    config.write_text(f"[cartd]\ndata_dir = {tmp_path}/cart\n[database]\npeewee_url = sqliteext:///{tmp_path}/old.sqlite3\n")
    result = run([sys.executable, "-c", "import pacifica.cartd.wsgi"], env=env)
    assert result.returncode != 0
    assert "run 'pacifica-cartd-cmd dbsync' first" in result.stderr
