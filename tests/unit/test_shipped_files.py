"""The shipped config.cfg and server.conf say what the service needs."""

from __future__ import annotations

from pathlib import Path

from cherrypy.lib import reprconf

from pacifica.ingest.config import OPTIONS, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_config_cfg_has_every_key_commented_and_loads(tmp_path, monkeypatch):
    text = (ROOT / "config.cfg").read_text()
    lines = text.splitlines()
    for option in OPTIONS:
        index = next((i for i, line in enumerate(lines) if line.startswith(f"{option.key} =")
                      and any(f"[{option.section}]" == lines[j] for j in range(i) if lines[j].startswith("["))), None)
        assert index is not None, f"[{option.section}] {option.key} missing from config.cfg"
        assert lines[index - 1].startswith(";"), f"{option.key} has no comment"
        assert option.env in text, f"{option.env} is not mentioned in config.cfg"
    monkeypatch.setenv("HOME", str(tmp_path))
    shipped = load_settings(str(ROOT / "config.cfg"), environ={})
    defaults = load_settings(environ={})
    assert shipped.replace(config_file=None) == defaults, "config.cfg documents values that are not the defaults"


def test_server_conf_allows_large_slow_uploads():
    config = reprconf.Config(str(ROOT / "server.conf"))
    assert config["global"]["server.max_request_body_size"] == 0
    assert config["global"]["server.socket_timeout"] >= 60
    assert config["global"]["server.socket_port"] == 8066
    assert config["/"]["request.show_tracebacks"] is False
    # The file is optional: it writes down the server's own defaults, nothing else.
    from pacifica.ingest.web.resources import SERVER_DEFAULTS

    assert {key: config["global"][key] for key in SERVER_DEFAULTS} == SERVER_DEFAULTS
    assert config["global"]["server.socket_host"] == "127.0.0.1"


def test_the_facility_example_loads_and_names_a_real_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(str(ROOT / "examples" / "facility" / "config.cfg"), environ={})
    for url in (settings.uniqueid_url, settings.policy_url, settings.archive_url, settings.metadata_url):
        assert url.startswith("http://"), url
    assert settings.broker_url.startswith("pyamqp://") and settings.backend_url.startswith("redis://")
    assert settings.peewee_url.startswith("postgres://")
    assert settings.trusted_proxies and settings.operators, "the example opens the service to its proxy and operators"
