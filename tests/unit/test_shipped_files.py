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
