"""Argument handling and behaviour of ``pacifica-ingest`` and ``pacifica-ingest-cmd`` (in process)."""

from __future__ import annotations

import pytest

from pacifica.ingest.__main__ import cmd, main
from pacifica.ingest.compat.orm import read_history, read_state


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.cfg"
    path.write_text(f"[ingest]\ndata_dir = {tmp_path}/data\nvolume_path = {tmp_path}/volume\n"
                    f"[database]\npeewee_url = sqliteext:///{tmp_path}/db.sqlite3\nconnect_attempts = 1\n"
                    "connect_wait = 0\n")
    return str(path)


def test_cmd_requires_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cmd([])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_job_requires_an_integer_job_id(capsys, config):
    with pytest.raises(SystemExit):
        cmd(["-c", config, "job", "--state", "FAILED"])
    with pytest.raises(SystemExit):
        cmd(["-c", config, "job", "--job-id", "abc"])
    assert "invalid int value" in capsys.readouterr().err


def test_dbchk_dbsync_dbchk(config, capsys):
    assert cmd(["-c", config, "dbchk"]) == -1
    assert cmd(["-c", config, "dbchk", "--equal"]) == -1
    assert cmd(["-c", config, "dbsync"]) == 0
    assert "upgraded to 1.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6" in capsys.readouterr().out
    assert cmd(["-c", config, "dbsync"]) == 0
    assert "upgraded" not in capsys.readouterr().out
    assert cmd(["-c", config, "dbchk"]) == 0
    assert cmd(["-c", config, "dbchk", "--equal"]) == 0


def test_job_sets_the_state_of_a_stuck_job(config, capsys):
    assert cmd(["-c", config, "dbsync"]) == 0
    assert cmd(["-c", config, "job", "--job-id", "12", "--state", "OK", "--task", "ingest files",
                "--task-percent", "50"]) == 0
    assert cmd(["-c", config, "job", "--job-id", "12", "--state", "FAILED",
                "--exception", "Failed by administrator"]) == 0
    cmd(["-c", config, "dbchk"])  # leaves the database bound to this config
    row = read_state(12)
    assert (row.state, row.task, float(row.task_percent), row.complete) == ("FAILED", "ingest files", 50.0, True)
    # get_state shows the administrator's words alone; who did it goes to the job's history.
    assert row.exception == "Failed by administrator"
    last = read_history(12)[-1]
    assert last.operator == "root"
    assert "set the job to FAILED 'ingest files' 50.0% with pacifica-ingest-cmd job" in last.message


def test_an_ok_job_keeps_an_empty_exception(config):
    """As in 0.4.1, ``exception`` is empty unless the job FAILED; any text goes to the history."""
    assert cmd(["-c", config, "dbsync"]) == 0
    assert cmd(["-c", config, "job", "--job-id", "13", "--state", "OK", "--task", "ingest files",
                "--exception", "will retry: archive down"]) == 0
    cmd(["-c", config, "dbchk"])
    assert read_state(13).exception == ""
    assert "will retry: archive down" in read_history(13)[-1].message


def test_job_refuses_unknown_jobs_and_bad_percent(config, capsys):
    assert cmd(["-c", config, "dbsync"]) == 0
    assert cmd(["-c", config, "job", "--job-id", "99", "--exception", "x"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cmd(["-c", config, "job", "--job-id", "99", "--state", "OK", "--task", "x", "--task-percent", "101"]) == 2


def test_missing_config_file_is_one_line(tmp_path, capsys):
    assert cmd(["-c", str(tmp_path / "missing.cfg"), "dbchk"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_retry_of_a_missing_file(config, capsys):
    assert cmd(["-c", config, "dbsync"]) == 0
    assert cmd(["-c", config, "retry", "--path", "/nonexistent.tar", "--job_id", "3"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_server_refuses_an_old_non_empty_schema(config, capsys):
    """An empty database gets its schema on first start; one holding an older schema needs dbsync."""
    from pacifica.ingest.compat.orm import DB
    from pacifica.ingest.db import migrations

    assert cmd(["-c", config, "dbchk"]) == -1  # binds orm.DB to the config's database
    DB.connect(reuse_if_open=True)
    migrations.upgrade(DB.obj, target=(1, 0))
    DB.close()
    assert main(["-c", config, "-p", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "run 'pacifica-ingest-cmd dbsync'" in err


def test_server_refuses_a_bad_database_url(tmp_path, capsys):
    path = tmp_path / "config.cfg"
    path.write_text("[database]\npeewee_url = oracle://nowhere/db\n")
    assert main(["-c", str(path)]) == 2
    assert "unsupported scheme 'oracle'" in capsys.readouterr().err


def test_dbconn_blocking_honours_attempts_and_wait(tmp_path, capsys):
    import time

    path = tmp_path / "config.cfg"
    path.write_text("[database]\npeewee_url = postgres://postgres@127.0.0.1:1/nothing\n"
                    "connect_attempts = 3\nconnect_wait = 0.3\n")
    started = time.monotonic()
    assert cmd(["-c", str(path), "dbchk"]) == 2
    elapsed = time.monotonic() - started
    assert "after 3 attempts" in capsys.readouterr().err
    assert elapsed >= 0.6, "did not wait connect_wait between attempts"


@pytest.mark.parametrize("entry", ["ingest", "ingest-cmd", "cartd", "cartd-cmd"])
def test_every_command_has_version_and_help_with_an_example_and_exit_codes(entry, capsys):
    from pacifica.cartd import __main__ as cartd
    from pacifica.core.version import __version__

    run = {"ingest": main, "ingest-cmd": cmd, "cartd": cartd.main, "cartd-cmd": cartd.cmd}[entry]
    with pytest.raises(SystemExit) as exit_info:
        run(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"pacifica-{entry} {__version__}\n"
    with pytest.raises(SystemExit):
        run(["--help"])
    shown = capsys.readouterr().out
    assert "example" in shown and "exit status:" in shown and "  2  " in shown


@pytest.mark.parametrize("entry", ["ingest", "cartd"])
def test_a_port_in_use_is_one_line_naming_it_and_p(entry, tmp_path, capsys):
    import socket

    from pacifica.cartd import __main__ as cartd

    run = {"ingest": main, "cartd": cartd.main}[entry]
    path = tmp_path / "config.cfg"
    path.write_text(f"[{'ingest' if entry == 'ingest' else 'cartd'}]\ndata_dir = {tmp_path}/data\n"
                    f"volume_path = {tmp_path}/volume\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(["-c", str(path), "-a", "127.0.0.1", "-p", str(port)]) == 3
    err = capsys.readouterr().err
    assert err == f"pacifica-{entry}: port {port} is in use (127.0.0.1:{port}: is another server running?); " \
                  "pass -p PORT to listen on another\n"


def test_retry_at_a_terminal_shows_a_progress_bar(config, tmp_path, capsys, monkeypatch):
    from tests.support.bundles import make_bundle

    bundle = tmp_path / "b.tar"
    make_bundle(str(bundle), {"data/a.bin": b"a" * 100_000})
    assert cmd(["-c", config, "dbsync"]) == 0
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert cmd(["-c", config, "retry", "--path", str(bundle), "--job-id", "21", "--username", "alice"]) == 0
    shown = capsys.readouterr()
    assert "job 21: OK ingest metadata" in shown.out
    assert "\r[" in shown.err and "%" in shown.err and shown.err.endswith("\n"), shown.err


def test_quota_set_show_list_and_remove(config, capsys):
    assert cmd(["-c", config, "quota", "set", "--user", "alice", "--bytes", "1GiB", "--uploads", "4"]) == 0
    assert capsys.readouterr().out.strip() == ("user alice: bytes 0 of 1073741824, files 0 of no limit, uploads at "
                                              "once 0 of 4; held by uploads in flight: 0 bytes")
    assert cmd(["-c", config, "quota", "set", "--project", "1234a", "--files", "10", "--period", "30d"]) == 0
    assert "(within 30 days)" in capsys.readouterr().out
    assert cmd(["-c", config, "quota", "set", "--user", "alice", "--bytes", "none"]) == 0
    assert "bytes 0 of no limit" in capsys.readouterr().out
    assert cmd(["-c", config, "quota", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in listed] == ["project 1234a", "user alice"]
    assert cmd(["-c", config, "quota", "remove", "--project", "1234a"]) == 0
    assert cmd(["-c", config, "quota", "remove", "--project", "1234a"]) == 0
    assert "has no quota; nothing removed" in capsys.readouterr().out
    # Wrong arguments say what is wrong and exit 2.
    assert cmd(["-c", config, "quota", "set", "--project", "p", "--uploads", "3"]) == 2
    assert cmd(["-c", config, "quota", "set", "--user", "bob", "--bytes", "lots"]) == 2
    assert cmd(["-c", config, "quota", "set", "--user", "bob"]) == 2
    assert cmd(["-c", config, "quota", "show"]) == 2
    errors = capsys.readouterr().err
    assert "give it with --user" in errors and "not a rate: 'lots'" in errors
    assert "give at least one of --bytes" in errors and "name whose quota" in errors


def test_fixity_of_an_empty_record_and_bad_arguments(config, capsys):
    assert cmd(["-c", config, "fixity", "--all"]) == 0
    assert capsys.readouterr().out.startswith("fixity: checked 0 files (0 bytes)")
    assert cmd(["-c", config, "fixity", "--older-than", "ninety days"]) == 2
    assert cmd(["-c", config, "fixity", "--all", "--rate", "fast"]) == 2
    assert "not a duration" in capsys.readouterr().err
    assert cmd(["-c", config, "fixity", "--backfill"]) == 0
    assert capsys.readouterr().out.strip() == "recorded 0 files of 0 jobs archived before the record"


def test_history_of_fixity_checks(config, capsys):
    assert cmd(["-c", config, "dbsync"]) == 0
    assert cmd(["-c", config, "history", "--job-id", "3", "--fixity"]) == 1
    assert "no fixity checks" in capsys.readouterr().err
    from pacifica.ingest.db import archived

    archived.record_files(3, [(31, "data/x", 1, "sha1", "a" * 40)], archived.Owner())
    archived.record_check(archived.Check(31, 3, "data/x", 1, "sha1", "a" * 40, "b" * 40, archived.FAILED,
                                         "sha1 is bbb, not aaa"))
    assert cmd(["-c", config, "history", "--job-id", "3", "--fixity"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split("\t")[1:] == ["31", "sha1", "a" * 40, "b" * 40, "failed", "sha1 is bbb, not aaa"]
    assert cmd(["-c", config, "history", "--job-id", "3", "--fixity", "--json"]) == 0
    assert '"outcome": "failed"' in capsys.readouterr().out
