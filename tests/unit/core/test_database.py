"""Opening the database: what cannot pass fails at once and says what to change; what may pass
is tried again. Run through the real command line against the real servers named by the engines
of ``PACIFICA_TEST_DATABASES`` (and SQLite always)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import ENGINES
from tests.support import services
from tests.support.procs import BIN, run

# A database of each engine that cannot be opened, and the words its refusal must carry.
UNOPENABLE = {
    "sqlite": ("sqliteext:///{tmp}/no/such/dir/ingest.sqlite3", "{tmp}/no/such/dir/ingest.sqlite3",
               "unable to open database file"),
    "postgres": (f"postgres://postgres@{services.PG_HOST}:5432/pacifica_no_such_db",
                 f"postgres://postgres@{services.PG_HOST}:5432/pacifica_no_such_db", "does not exist"),
    "mysql": (f"mysql://root@{services.MYSQL_HOST}:3306/pacifica_no_such_db",
              f"mysql://root@{services.MYSQL_HOST}:3306/pacifica_no_such_db", "Unknown database"),
}


@pytest.mark.parametrize("kind", sorted({"sqlite", *ENGINES}))
def test_a_database_that_cannot_be_opened_fails_at_once_naming_the_setting(kind, tmp_path):
    url, shown, cause = (part.format(tmp=tmp_path) for part in UNOPENABLE[kind])
    started = time.monotonic()
    # Ten attempts 20 s apart would take minutes if the failure were retried.
    done = run([str(BIN / "pacifica-ingest-cmd"), "dbchk"], timeout=60,
               env={"PEEWEE_URL": url, "INGEST_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
                    "DATABASE_CONNECT_ATTEMPTS": "10", "DATABASE_CONNECT_WAIT": "20"})
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert f"cannot open the database {shown}: " in line and cause in line, line
    assert "[database] peewee_url (PEEWEE_URL)" in line, line
    assert took < 30, f"took {took:.0f} s: the failure was tried again"
