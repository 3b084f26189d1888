"""Job ids from a URL: a non-negative 64-bit integer, or 400 naming the problem."""

from __future__ import annotations

import cherrypy
import pytest

from pacifica.ingest.web.kit import MAX_JOB_ID, parse_job_id


@pytest.mark.parametrize(("given", "problem"), [
    (None, "required"), ("", "required"), ("x1", "integer"), ("-1", "negative"),
    ("304827479807213371392", "64-bit"),  # found by schemathesis: the database answered 500
])
def test_a_bad_job_id_is_a_400_naming_the_problem(given, problem):
    with pytest.raises(cherrypy.HTTPError) as refused:
        parse_job_id(given)
    assert refused.value.status == 400 and problem in refused.value._message


def test_the_largest_job_id_is_accepted():
    assert parse_job_id(str(MAX_JOB_ID)) == MAX_JOB_ID
