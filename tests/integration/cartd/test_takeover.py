"""Databases of the published pacifica-cartd 0.7.0 and ours are interchangeable (ours adds the minor
version 2.1, which the published code accepts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support import services
from tests.support.legacy import legacy_venv
from tests.support.procs import run

LEGACY_VERSION = "0.7.0"
OURS = Path(sys.executable).parent / "pacifica-cartd-cmd"


@pytest.fixture(scope="session")
def legacy_cartd() -> Path:
    """A throwaway virtualenv holding the published pacifica-cartd 0.7.0 (built once, then cached)."""
    venv = Path.home() / ".cache" / "pacifica-ingest-tests" / f"legacy-cartd-{LEGACY_VERSION}"
    return legacy_venv(venv, f"pacifica-cartd=={LEGACY_VERSION}", "psycopg2-binary")


def _legacy(venv: Path, url: str, cwd: Path, *argv: str):
    env = {"PEEWEE_URL": url, "CARTD_CONFIG": str(cwd / "none.ini"), "PYTHONPATH": ""}
    return run([str(venv / "bin" / argv[0]), *argv[1:]], env=env, cwd=cwd)


def test_a_database_of_0_7_0_is_taken_over_and_stays_usable_by_it(legacy_cartd, tmp_path):
    url = services.create_postgres_db("pacifica_cartd_takeover")
    assert _legacy(legacy_cartd, url, tmp_path, "pacifica-cartd-cmd", "dbsync").returncode == 0
    written = _legacy(legacy_cartd, url, tmp_path, "python", "-c",
                      "from pacifica.cartd.orm import Cart, File\n"
                      "Cart.database_connect()\n"
                      "cart = Cart.create(cart_uid='legacy-1', status='ready', bundle_path='/v/1')\n"
                      "File.create(cart=cart, file_name='42', bundle_path='/v/1/a.txt', hash_type='md5',"
                      " hash_value='0' * 32)\n")
    assert written.returncode == 0, written.stderr
    config = tmp_path / "cart.ini"
    config.write_text(f"[database]\npeewee_url = {url}\nconnect_attempts = 1\n")
    # 2.0 is safe for us (same major version); dbsync adds 2.1 (cart owners, API tokens), a minor
    # version the published code ignores.
    assert run([str(OURS), "-c", str(config), "dbchk"]).returncode == 0
    synced = run([str(OURS), "-c", str(config), "dbsync"])
    assert synced.returncode == 0 and "upgraded to 2.1" in synced.stdout, synced.stdout + synced.stderr
    assert _legacy(legacy_cartd, url, tmp_path, "pacifica-cartd-cmd", "dbchk").returncode == 0

    from pacifica.cartd.compat.orm import DB, Cart, File
    from pacifica.cartd.utils import Cartutils
    from pacifica.core.database import make_database

    previous = DB.obj
    DB.initialize(make_database(url))
    try:
        assert Cartutils.cart_status("legacy-1") == ["ready", ""]
        [legacy_file] = list(Cart.get(Cart.cart_uid == "legacy-1").files)
        assert (legacy_file.file_name, legacy_file.hash_type) == ("42", "md5")
        ours = Cart.create(cart_uid="ours-1", status="staging")
        File.create(cart=ours, file_name="43", bundle_path="/v/2/b.txt", hash_type="sha1", hash_value="")
    finally:
        DB.obj.close()
        DB.initialize(previous)
    read = _legacy(legacy_cartd, url, tmp_path, "python", "-c",
                   "from pacifica.cartd.orm import Cart\n"
                   "Cart.database_connect()\n"
                   "cart = Cart.get(Cart.cart_uid == 'ours-1')\n"
                   "print(cart.status, [f.file_name for f in cart.files])\n")
    assert read.stdout.strip() == "staging ['43']", read.stdout + read.stderr


def test_a_database_we_create_is_accepted_by_0_7_0(legacy_cartd, tmp_path):
    url = services.create_postgres_db("pacifica_cartd_takeover_ours")
    config = tmp_path / "cart.ini"
    config.write_text(f"[database]\npeewee_url = {url}\n")
    assert run([str(OURS), "-c", str(config), "dbsync"]).returncode == 0
    # Ours is 2.1: the published code checks the major version only, as with ingest's minor versions.
    checked = _legacy(legacy_cartd, url, tmp_path, "pacifica-cartd-cmd", "dbchk")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert os.path.exists(legacy_cartd / "bin" / "pacifica-cartd")
