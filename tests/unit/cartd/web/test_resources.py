"""The rules for the files of a cart request (``POST /<uid>``), each file on its own."""

from __future__ import annotations

import pytest

from pacifica.cartd.web.resources import SHAPE, RangeNotSatisfiable, file_problems, item_problems, requested_range

GOOD = {"id": "17", "path": "/run/./a.dat", "hashtype": "sha1", "hashsum": ""}


def test_a_good_file_has_no_problem_and_its_path_is_made_relative():
    item = dict(GOOD)
    assert item_problems("f", item) == []
    assert item["path"] == "run/a.dat"


@pytest.mark.parametrize(("change", "problem"), [
    ({"id": ""}, "id must be the file's id"),
    ({"id": True}, "id must be the file's id"),
    ({"id": "1\x002"}, "control characters"),
    ({"id": "9" * 1025}, "exceed 1024"),
    ({"path": "../etc/passwd"}, "relative file path inside the cart"),
    ({"path": "/"}, "relative file path inside the cart"),
    ({"path": "a/../.."}, "relative file path inside the cart"),
    ({"path": "a\nb"}, "control characters"),
    ({"path": 7}, "relative file path inside the cart"),
    ({"hashtype": "crc99"}, "hashlib algorithm"),
    ({"hashsum": None}, "hashsum must be"),
])
def test_each_bad_field_is_named(change, problem):
    found = item_problems("fileids[3]", {**GOOD, **change})
    assert len(found) == 1 and found[0].startswith("fileids[3]") and problem in found[0], found


def test_a_whole_request_names_every_problem():
    assert file_problems({"fileids": []}) == [SHAPE]
    assert file_problems([GOOD]) == [SHAPE]
    found = file_problems({"fileids": [dict(GOOD), "x", dict(GOOD, path="run/a.dat")], "bundle": "yes"})
    assert found == ["bundle must be true or false", "fileids[1] must be an object",
                     "fileids[2]: path 'run/a.dat' is given twice"]


@pytest.mark.parametrize(("header", "if_range", "answer"), [
    (None, None, None),                       # no Range: the whole tar
    ("bytes=0-9", None, (0, 10)),
    ("bytes=90-200", None, (90, 100)),        # a stop past the end is the end
    ("bytes=-5", None, (95, 100)),            # the last 5 bytes
    ("bytes=0-1,5-6", None, None),            # several ranges: the whole tar
    ("pages=1-2", None, None),                # not bytes: the whole tar
    ("bytes=0-9", '"etag"', (0, 10)),         # If-Range naming these bytes
    ("bytes=0-9", '"other"', None),           # If-Range naming other bytes: the whole tar
])
def test_the_byte_range_asked_for(header, if_range, answer):
    assert requested_range(100, '"etag"', header, if_range) == answer


def test_a_range_past_the_end_is_not_satisfiable():
    with pytest.raises(RangeNotSatisfiable, match="past the end of the 100-byte tar"):
        requested_range(100, '"etag"', "bytes=200-", None)
