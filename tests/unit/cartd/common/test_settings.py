"""Cartd settings: the published sections, keys and environment variables."""

from __future__ import annotations

import os

import pytest

from pacifica.cartd.__main__ import cmd
from pacifica.cartd.common.settings import get_config, load_settings, run_embedded_worker
from pacifica.core.errors import ConfigError
from pacifica.ingest.common.errors import ConfigError as IngestConfigError


def test_defaults_keep_everything_in_the_data_directory(tmp_path):
    settings = load_settings(environ={"CARTD_DATA_DIR": str(tmp_path)})
    assert settings.volume_path == f"{tmp_path}/volume"
    assert settings.peewee_url == f"sqliteext:///{tmp_path}/cartd.sqlite3"
    assert (settings.lru_buffer_time, settings.lru_purge, settings.bundle_task) == (0, True, False)
    assert settings.transfer_size == 4 * 1024 * 1024
    # Embedded, as the ingest service: the ingest service's archive, a queue on disk, a worker.
    assert (settings.archive_url, settings.broker_url, settings.backend_url) == ("embedded:",) * 3
    assert settings.embedded_archive == os.path.expanduser("~/.pacifica-ingest/data/archive")
    assert run_embedded_worker(settings)
    moved = load_settings(environ={"CARTD_DATA_DIR": str(tmp_path), "INGEST_DATA_DIR": str(tmp_path / "in")})
    assert moved.embedded_archive == f"{tmp_path}/in/archive"
    rabbit = load_settings(environ={"CARTD_DATA_DIR": str(tmp_path), "BROKER_URL": "pyamqp://"})
    assert not run_embedded_worker(rabbit)


def test_file_then_environment(tmp_path):
    config = tmp_path / "cart.ini"
    config.write_text("[cartd]\nvolume_path = /srv/carts\nlru_buffer_time = 30\nbundle_task = True\n"
                      "[archiveinterface]\nurl = http://archive:8080/\n")
    settings = load_settings(str(config), environ={"ARCHIVE_INTERFACE_URL": "http://other:8080/"})
    assert (settings.volume_path, settings.lru_buffer_time, settings.bundle_task) == ("/srv/carts", 30.0, True)
    assert settings.archive_url == "http://other:8080/"
    assert get_config(settings).get("cartd", "bundle_task") == "on"


def test_bad_values_and_missing_files_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"\[cartd\] lru_buffer_time \(env LRU_BUFFER_TIME\)"):
        load_settings(environ={"LRU_BUFFER_TIME": "-1"})
    with pytest.raises(IngestConfigError, match="not found"):
        load_settings(str(tmp_path / "missing.ini"))


def test_dbsync_then_dbchk(tmp_path, capsys):
    config = tmp_path / "cart.ini"
    config.write_text(f"[cartd]\ndata_dir = {tmp_path}\n")
    assert cmd(["-c", str(config), "dbchk"]) == -1
    assert cmd(["-c", str(config), "dbsync"]) == 0
    assert "upgraded to 0.1, 1.0, 2.0" in capsys.readouterr().out
    assert cmd(["-c", str(config), "dbchk", "--equal"]) == 0
    assert cmd(["-c", str(tmp_path / "nope.ini"), "dbsync"]) == 2
