"""Client JSON read into a file and checked in one streaming pass: depth, validity and outline
as ``loads`` decides them, items one at a time, and a document written back as it is read."""

from __future__ import annotations

import io
import json

import pytest

from pacifica.core import jsonbody
from pacifica.core.redact import Problems, summarise


def _spooled(raw: bytes):
    return jsonbody.spool_limited(io.BytesIO(raw), io.BytesIO(), 1 << 20)


@pytest.mark.parametrize("raw, kind, members", [
    (b'[{"a": 1}, 2]', "array", {}),
    (b'{"metadata": [], "files": null, "x": {"y": [1]}}', "map", {"metadata": "array", "files": "null", "x": "map"}),
    (b'"text"', "string", {}),
])
def test_outline_names_the_top_level_and_the_kinds_under_it(raw, kind, members):
    assert jsonbody.outline(_spooled(raw)) == jsonbody.Outline(kind, members)


@pytest.mark.parametrize("raw, reason", [
    (b"[" * 65 + b"]" * 65, "nests deeper than 64"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 64"),
    (b'[{"a": ' + b"[" * 64 + b"]" * 64 + b"}]", "nests deeper than 64"),
    (b'["\xff"]', "not valid JSON"),
    (b"[1, 2", "not valid JSON"),
    (b"[1] [2]", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[NaN]", "not valid JSON"),
])
def test_outline_refuses_what_is_not_json_or_too_deep(raw, reason):
    with pytest.raises(jsonbody.JsonRefused, match=reason):
        jsonbody.outline(_spooled(raw))


def test_outline_takes_the_deepest_document_loads_takes():
    raw = b"[" * 64 + b"]" * 64
    jsonbody.loads(raw.decode())
    assert jsonbody.outline(_spooled(raw)).kind == "array"


def test_items_come_one_at_a_time_with_json_numbers():
    handle = _spooled(b'{"metadata": [{"size": 1, "f": 0.5}, {"n": null}], "files": [{"name": "data/a"}]}')
    assert list(jsonbody.items(handle, "metadata.item")) == [{"size": 1, "f": 0.5}, {"n": None}]
    assert list(jsonbody.items(handle, "files.item")) == [{"name": "data/a"}]
    assert type(next(jsonbody.items(handle, "metadata.item"))["f"]) is float


def test_spooling_stops_at_the_limit_and_at_a_declared_length_over_it():
    with pytest.raises(jsonbody.TooLarge):
        jsonbody.spool_limited(io.BytesIO(b"x" * 11), io.BytesIO(), 10)
    with pytest.raises(jsonbody.TooLarge):
        jsonbody.spool_limited(io.BytesIO(b""), io.BytesIO(), 10, declared=11)
    assert jsonbody.spool_limited(io.BytesIO(b"x" * 10), io.BytesIO(), 10).read() == b"x" * 10


def test_dump_items_writes_one_list_from_any_iterable():
    values = [{"a": "é"}, 1, [None]]
    written = jsonbody.dump_items(iter(values), io.BytesIO()).read()
    assert json.loads(written) == values
    assert jsonbody.dump_items(iter(()), io.BytesIO()).read() == b"[]"
    with pytest.raises(ValueError):
        jsonbody.dump_items([float("nan")], io.BytesIO())


def test_problems_keep_the_first_twenty_and_count_the_rest():
    found = Problems(f"p{number}" for number in range(25))
    found.extend(Problems(["q"] * 5))
    assert len(found) == 30 and found.listed()[:2] == ["p0", "p1"] and found.listed()[-1] == "and 10 more"
    assert len(found.listed()) == 21
    assert summarise(found) == summarise([f"p{number}" for number in range(25)] + ["q"] * 5)
    assert not Problems() and Problems().listed() == []
