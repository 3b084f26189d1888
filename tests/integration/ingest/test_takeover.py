"""A PostgreSQL database written by the published pacifica-ingest 0.4.1 is taken over intact."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support import services
from tests.support.procs import run

LEGACY_JOBS = """
from pacifica.ingest.orm import update_state
update_state(101, 'OK', 'ingest metadata', 100)
update_state(102, 'FAILED', 'ingest files', 0, 'hash mismatch in data/x')
update_state(103, 'OK', 'Policy Validation', 100)
"""


def test_database_created_by_0_4_1_is_taken_over(legacy_ingest, tmp_path):
    url = services.create_postgres_db("pacifica_ingest_takeover")
    legacy_env = {"PEEWEE_URL": url, "INGEST_CONFIG": str(tmp_path / "none.ini"), "PYTHONPATH": ""}
    # Run the legacy code outside this checkout, so that its own pacifica.ingest is imported.
    synced = run([str(legacy_ingest / "bin" / "pacifica-ingest-cmd"), "dbsync"], env=legacy_env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    run([str(legacy_ingest / "bin" / "python"), "-c", LEGACY_JOBS], env=legacy_env, check=True, cwd=tmp_path)

    config = tmp_path / "config.cfg"
    config.write_text(f"[database]\npeewee_url = {url}\nconnect_attempts = 1\n")
    ours = Path(sys.executable).parent / "pacifica-ingest-cmd"
    assert run([str(ours), "-c", str(config), "dbchk"]).returncode == 0, "our dbchk refused a 0.4.1 database"
    assert run([str(ours), "-c", str(config), "dbchk", "--equal"]).returncode != 0
    synced = run([str(ours), "-c", str(config), "dbsync"])
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "upgraded to 2.1, 2.2, 2.3, 2.4, 2.5, 2.6" in synced.stdout, synced.stdout
    assert run([str(ours), "-c", str(config), "dbchk", "--equal"]).returncode == 0
    legacy_check = run([str(legacy_ingest / "bin" / "pacifica-ingest-cmd"), "dbchk"], env=legacy_env, cwd=tmp_path)
    assert legacy_check.returncode == 0, "the published 0.4.1 no longer accepts the upgraded database"

    from pacifica.core.database import make_database
    from pacifica.ingest.compat.orm import DB, read_state, update_state
    from pacifica.ingest.utils import create_state_response

    previous = DB.obj
    DB.initialize(make_database(url))
    try:
        rows = {job: create_state_response(read_state(job)) for job in (101, 102, 103)}
        assert (rows[101]["state"], rows[101]["task"], rows[101]["task_percent"], rows[101]["complete"]) == \
            ("OK", "ingest metadata", "100.0", True)
        assert (rows[102]["state"], rows[102]["exception"], rows[102]["complete"]) == \
            ("FAILED", "hash mismatch in data/x", True)
        assert (rows[103]["task"], rows[103]["complete"]) == ("Policy Validation", False)
        update_state(104, "OK", "UPLOADING", 0)
        assert read_state(104).state == "OK"
    finally:
        DB.obj.close()
        DB.initialize(previous)

    check = run([str(legacy_ingest / "bin" / "python"), "-c",
                 "from pacifica.ingest.orm import read_state; print(read_state(104).task)"],
                env=legacy_env, cwd=tmp_path)
    assert check.stdout.strip() == "UPLOADING", "the published service cannot read what we wrote"
    # Schema 2.2's new columns may be NULL: rows the published code still inserts are valid.
    legacy_write = run([str(legacy_ingest / "bin" / "python"), "-c",
                        "from pacifica.ingest.orm import update_state; update_state(105, 'OK', 'open tar', 0)"],
                       env=legacy_env, cwd=tmp_path)
    assert legacy_write.returncode == 0, legacy_write.stderr
    listed = run([str(ours), "-c", str(config), "jobs", "--stalled", "0"])
    assert listed.returncode == 0 and any(line.split("\t")[:3] == ["105", "OK", "open tar"]
                                          for line in listed.stdout.splitlines()), listed.stdout + listed.stderr
