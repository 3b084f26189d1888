"""Settings: defaults < INI < environment, typed, with clear errors."""

from __future__ import annotations

import pytest

from pacifica.ingest.common import environment as ingest_globals
from pacifica.ingest.common.errors import ConfigError
from pacifica.ingest.config import OPTIONS, load_settings, parse_size, settings_as_config


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("INGEST_CONFIG", raising=False)
    return tmp_path


def test_defaults_are_embedded_under_one_data_directory(home):
    settings = load_settings(environ={})
    data = str(home / ".pacifica-ingest" / "data")
    assert settings.data_dir == data
    assert settings.volume_path == f"{data}/volume"
    assert settings.peewee_url == f"sqliteext:///{data}/ingest.sqlite3"
    assert settings.auth_header == "X-Http-Authed-User"
    assert settings.default_user == "root"
    assert settings.transfer_size == 4 * 1024 * 1024
    for url in (settings.uniqueid_url, settings.policy_url, settings.archive_url, settings.metadata_url,
                settings.broker_url, settings.backend_url):
        assert url == "embedded:"
    assert settings.broker_embedded and settings.run_embedded_worker
    assert (settings.connect_attempts, settings.connect_wait) == (10, 20.0)
    assert settings.config_file is None


def test_data_dir_override_moves_everything(home):
    settings = load_settings(environ={"INGEST_DATA_DIR": "/srv/ingest"})
    assert (settings.volume_path, settings.peewee_url) == ("/srv/ingest/volume", "sqliteext:////srv/ingest/ingest.sqlite3")
    assert settings.data_path("archive") == "/srv/ingest/archive"


def test_embedded_worker_follows_the_broker(home):
    assert not load_settings(environ={"BROKER_URL": "redis://127.0.0.1:6379/0"}).run_embedded_worker
    assert load_settings(environ={"BROKER_URL": "redis://x", "INGEST_EMBEDDED_WORKER": "true"}).run_embedded_worker
    assert not load_settings(environ={"INGEST_EMBEDDED_WORKER": "off"}).run_embedded_worker
    with pytest.raises(ConfigError, match="embedded_worker"):
        load_settings(environ={"INGEST_EMBEDDED_WORKER": "sometimes"})


def test_ini_overrides_defaults_and_env_overrides_ini(tmp_path):
    ini = tmp_path / "config.ini"
    ini.write_text("[ingest]\nvolume_path = /from/ini\ntransfer_size = 2 Kb\n"
                   "[uniqueid]\nurl = http://ini:1\n[database]\nconnect_attempts = 4\n")
    settings = load_settings(str(ini), environ={"UNIQUEID_URL": "http://env:2", "DATABASE_CONNECT_ATTEMPTS": "7"})
    assert settings.volume_path == "/from/ini"
    assert settings.transfer_size == 2048
    assert settings.uniqueid_url == "http://env:2"
    assert settings.connect_attempts == 7
    assert settings.config_file == str(ini)


def test_every_option_has_its_environment_override(home):
    samples = {str: "value", "_auto_bool": "true", "_bool": "false", "_networks": "10.0.0.0/8",
               "_directories": "/srv/a", "_names": "alice,bob", "_log_format": "json"}
    environ = {option.env: samples.get(option.coerce, samples.get(option.coerce.__name__, "3"))
               for option in OPTIONS}
    environ["INGEST_DATA_DIR"] = "/data"
    settings = load_settings(environ=environ)
    for option in OPTIONS:
        expected = option.coerce(environ[option.env])
        assert getattr(settings, option.field) == expected, option.env
    assert settings.data_dir == "/data"


def test_ingest_config_environment_names_the_file(tmp_path, monkeypatch):
    ini = tmp_path / "elsewhere.ini"
    ini.write_text("[ingest]\nvolume_path = /via/env\n")
    assert load_settings(environ={"INGEST_CONFIG": str(ini)}).volume_path == "/via/env"
    monkeypatch.setenv("INGEST_CONFIG", str(ini))
    assert str(ini) == ingest_globals.CONFIG_FILE
    monkeypatch.setenv("INGEST_CONFIG", str(tmp_path / "other.ini"))
    assert str(tmp_path / "other.ini") == ingest_globals.CONFIG_FILE, "CONFIG_FILE was frozen at import"


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "nope.ini"), environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(environ={"INGEST_CONFIG": str(tmp_path / "nope.ini")})


def test_bad_values_name_the_key(home):
    with pytest.raises(ConfigError, match=r"\[ingest\] transfer_size.*TRANSFER_SIZE"):
        load_settings(environ={"TRANSFER_SIZE": "lots"})
    with pytest.raises(ConfigError, match="connect_attempts"):
        load_settings(environ={"DATABASE_CONNECT_ATTEMPTS": "-1"})
    with pytest.raises(ConfigError, match="transfer_size"):
        load_settings(environ={"TRANSFER_SIZE": "0 b"})


def test_broken_ini_is_a_config_error(tmp_path):
    ini = tmp_path / "broken.ini"
    ini.write_text("no section header here\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_settings(str(ini), environ={})


def test_get_config_shape_round_trips(home):
    settings = load_settings(environ={"VOLUME_PATH": "/v"})
    parser = settings_as_config(settings)
    assert set(parser.sections()) == {"ingest", "auth", "uniqueid", "policy", "archiveinterface", "metadata",
                                      "celery", "database", "fixity", "s3"}
    assert parser.get("ingest", "volume_path") == "/v"
    # Every value read back gives the same setting (a duration written as seconds, not days).
    assert load_settings(environ={}, overrides={"fixity_interval": parser.get("fixity", "interval"),
                                                "fixity_rate": parser.get("fixity", "rate")}).fixity_interval \
        == settings.fixity_interval == 86400
    assert parse_size(parser.get("ingest", "transfer_size")) == settings.transfer_size
    assert parser.getint("database", "connect_attempts") == 10


@pytest.mark.parametrize(("text", "expected"), [
    ("4 Mb", 4 * 1024**2), ("1 Kb", 1024), ("1 KB", 1000), ("2 GB", 2 * 10**9), ("1.5 Kb", 1536),
    ("10 B", 10), ("1 Tb", 1024**4), ("12345", 12345), (" 3 MB ", 3 * 10**6), (77, 77),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "Mb", "4 Zb", "four Mb", "1 2 3"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_trusted_proxies_and_move_roots_are_validated(home):
    settings = load_settings(environ={"INGEST_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16",
                                      "INGEST_MOVE_ROOTS": "/srv/instrument,/data/"})
    assert settings.trusted_proxies == ("10.0.0.5", "192.168.0.0/16")
    assert settings.move_roots == ("/srv/instrument", "/data")
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(environ={"INGEST_TRUSTED_PROXIES": "proxy.example.org"})
    with pytest.raises(ConfigError, match="move_roots"):
        load_settings(environ={"INGEST_MOVE_ROOTS": "relative/dir"})
