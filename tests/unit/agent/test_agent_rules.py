"""The agent's rules without a service: what is whole, what is ignored, what is pruned first, and
the command line's durations and sizes."""

from __future__ import annotations

import argparse
import json
import logging
import os

import pytest

from pacifica.agent.__main__ import JsonLines, _parser, _settings, seconds, size
from pacifica.agent.agent import Agent, Rule
from pacifica.agent.bundle import files_of
from pacifica.agent.journal import COMPLETE, Journal
from pacifica.agent.openfiles import open_for_writing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _agent(tmp_path, rule: Rule, clock: Clock, **options) -> Agent:
    return Agent([rule], service=None, journal=Journal(str(tmp_path / "j.sqlite3")), clock=clock,  # type: ignore[arg-type]
                 **options)


def test_a_file_is_whole_after_its_quiet_period_or_with_its_marker(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / "a.dat").write_bytes(b"a")
    (root / "b.dat").write_bytes(b"b")
    (root / ".hidden").write_bytes(b"h")
    (root / "c.part").write_bytes(b"p")
    clock = Clock()
    agent = _agent(tmp_path, Rule(str(root), {}, quiet=10), clock)
    assert agent.find() == []  # first seen now
    (root / "b.dat.done").write_text("")
    clock.now += 5
    assert [name for _rule, name, _found in agent.find()] == ["b.dat"]  # its marker
    assert set(agent.waiting) == {str(root / "a.dat")}
    clock.now += 6
    assert [name for _rule, name, _found in agent.find()] == ["a.dat", "b.dat"]
    (root / "a.dat").write_bytes(b"aa")  # changed: quiet again from now
    clock.now += 1
    assert [name for _rule, name, _found in agent.find()] == ["b.dat"]


def test_a_run_directory_is_whole_when_all_its_files_are(tmp_path):
    root = tmp_path / "w"
    (root / "run-1").mkdir(parents=True)
    (root / "run-1" / "x").write_bytes(b"x")
    (root / "run-2").mkdir()
    (root / "run-2" / "y").write_bytes(b"y")
    (root / "run-2" / "DONE").write_text("")
    clock = Clock()
    agent = _agent(tmp_path, Rule(str(root), {}, per="directory", quiet=10), clock)
    [(_rule, name, found)] = agent.find()
    assert name == "run-2" and [os.path.basename(path) for path, _stat in found] == ["y"]
    clock.now += 11
    assert [name for _rule, name, _found in agent.find()] == ["run-1", "run-2"]


def test_pruning_with_a_free_space_threshold_takes_the_oldest_first(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    agent = _agent(tmp_path, Rule(str(root), {}), Clock(), prune=True, keep_free=1)
    for number in range(3):
        path = root / f"f{number}"
        path.write_bytes(b"z")
        files = files_of(str(root), [str(path)])
        bundle = agent.journal.add_bundle(str(root), path.name, files, [(str(path), 1, 0)], b"[]", 0, 2048)
        agent.journal.update(bundle.id, state=COMPLETE, job_id=number + 1)
    assert agent._prunable() == []  # more than 1 byte is free: nothing needs to go
    agent.keep_free = 1 << 62
    assert [bundle.name for bundle in agent._prunable()] == ["f0", "f1", "f2"]


def test_a_file_open_for_writing_is_seen(tmp_path):
    path = tmp_path / "open.dat"
    with open(path, "wb") as out:
        out.write(b"x")
        assert open_for_writing([str(path)]) == {str(path)}
    with open(path, "rb"):
        assert open_for_writing([str(path)]) == set(), "open for reading only"


@pytest.mark.parametrize(("text", "expected"), [("10s", 10), ("2m", 120), ("1h", 3600), ("0.5", 0.5)])
def test_durations(text, expected):
    assert seconds(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("50MB", 50 * 10**6), ("1GiB", 1024**3), ("20 MB/s", 20 * 10**6),
                                                ("100", 100)])
def test_sizes(text, expected):
    assert size(text) == expected


def test_bad_values_are_refused():
    with pytest.raises(argparse.ArgumentTypeError):
        seconds("soon")
    with pytest.raises(argparse.ArgumentTypeError):
        size("lots")


def test_a_run_directory_overrides_the_rules_metadata(tmp_path):
    root = tmp_path / "w"
    (root / "run-3").mkdir(parents=True)
    (root / "run-3" / "x.dat").write_bytes(b"x")
    (root / "run-3" / "pacifica.json").write_text(json.dumps({"project": "1234b", "Tag": "calibration"}))
    clock = Clock()
    agent = _agent(tmp_path, Rule(str(root), {"submitter": 10, "project": "1234a", "instrument": 54},
                                  per="directory", quiet=0), clock)
    [(rule, name, found)] = agent.find()
    bundle = agent.make(rule, name, found)
    document = json.loads(bundle.metadata)
    assert {"destinationTable": "Transactions.project", "value": "1234b"} in document
    assert {"destinationTable": "Transactions.instrument", "value": 54} in document
    assert {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "calibration"} in document
    assert [item["name"] for item in document if item["destinationTable"] == "Files"] == ["x.dat"]


def test_json_logs_are_one_object_a_line():
    record = logging.LogRecord("pacifica.agent", logging.WARNING, __file__, 1, "bundle %s: %s", (3, 'a "quoted" why'),
                               None)
    line = JsonLines().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == 'bundle 3: a "quoted" why'


def test_a_configuration_file_holds_the_settings_of_several_directories(tmp_path, monkeypatch):
    monkeypatch.delenv("PACIFICA_INGEST_TOKEN", raising=False)
    config = tmp_path / "agent.ini"
    config.write_text("[agent]\nurl = http://ingest:8066\ntoken = t0k\nprune = true\nkeep_free = 200GB\n"
                      "rate = 20MB/s\nstreams = 4\n"
                      f"[watch {tmp_path}/detector]\nsubmitter = 10\nproject = 1234a\ninstrument = 54\n"
                      "per = directory\nquiet = 30s\n"
                      f"[watch {tmp_path}/camera]\nsubmitter = 10\nproject = 1234a\ninstrument = 55\n")
    options, rules = _settings(_parser().parse_args(["watch", "--config", str(config)]))
    assert (options["url"], options["token"], options["prune"], options["keep_free"], options["rate"],
            options["streams"]) == ("http://ingest:8066", "t0k", True, 200 * 10**9, 20 * 10**6, 4)
    assert [(os.path.basename(rule.root), rule.per, rule.quiet, rule.transaction["instrument"]) for rule in rules] == \
        [("detector", "directory", 30.0, 54), ("camera", "file", 10.0, 55)]
    # The command line wins over the file, and a directory without a URL is refused.
    options, _rules = _settings(_parser().parse_args(["watch", "--config", str(config), "--url", "http://other:1"]))
    assert options["url"] == "http://other:1"
    with pytest.raises(SystemExit, match="give the service's --url"):
        _settings(_parser().parse_args(["watch", str(tmp_path)]))
