"""A server database that refuses the credentials: the command line fails at once, names the
database without its password, and never shows the password (PostgreSQL and MariaDB, always)."""

from __future__ import annotations

import pytest

from tests.support import services
from tests.support.procs import BIN, run

SERVERS = {"postgres": (services.PG_HOST, 5432), "mysql": (services.MYSQL_HOST, 3306)}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_refused_credentials_fail_at_once_and_the_password_is_never_shown(kind, tmp_path):
    host, port = SERVERS[kind]
    url = f"{kind}://nobody:s3cret-word@{host}:{port}/pacifica_no_such_db"
    done = run([str(BIN / "pacifica-ingest-cmd"), "dbchk"], timeout=60,
               env={"PEEWEE_URL": url, "INGEST_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
                    "DATABASE_CONNECT_ATTEMPTS": "10", "DATABASE_CONNECT_WAIT": "20"})
    assert done.returncode == 2, done.stderr
    assert "s3cret-word" not in done.stderr + done.stdout
    assert f"cannot open the database {kind}://nobody@{host}:{port}/pacifica_no_such_db: " in done.stderr
