"""``pacifica.ingest.wsgi.application`` serves the API under a plain WSGI server."""

from __future__ import annotations

import sys

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
    config.write_text(f"[ingest]\nvolume_path = {tmp_path}\n[database]\npeewee_url = sqliteext:///{tmp_path}/db.sqlite3\n")
    from tests.support.procs import run

    assert run([sys.executable, "-m", "pacifica.ingest", "--help"]).returncode == 0
    synced = run([str(__import__("pathlib").Path(sys.executable).parent / "pacifica-ingest-cmd"), "-c", str(config),
                  "dbsync"])
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


def test_wsgi_refuses_an_unsynced_database(tmp_path):
    config = tmp_path / "config.cfg"
    config.write_text(f"[database]\npeewee_url = sqliteext:///{tmp_path}/empty.sqlite3\n")
    from tests.support.procs import run

    result = run([sys.executable, "-c", "import pacifica.ingest.wsgi"], env={"INGEST_CONFIG": str(config)})
    assert result.returncode != 0
    assert "run 'pacifica-ingest-cmd dbsync' first" in result.stderr
