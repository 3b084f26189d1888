"""The ingest service's OpenAPI document is valid OpenAPI 3.1 and covers exactly what is served."""

from __future__ import annotations

from openapi_spec_validator import validate

from pacifica.ingest.web.openapi import openapi
from pacifica.ingest.web.resources import make_app
from tests.support.openapi import documented_routes, served_routes


def test_the_document_is_valid_openapi_3_1():
    validate(openapi())
    assert openapi()["openapi"] == "3.1.0"


def test_the_document_and_the_served_routes_are_the_same():
    served = served_routes(make_app(None).root)
    assert documented_routes(openapi()) == served
    assert ("PATCH", "/uploads") in served and ("POST", "/validate") in served


def test_every_operation_answers_errors_as_documented_json():
    for path, item in openapi()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], f"{method} {path} documents no response"
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and method != "head" and "content" in response:
                    assert "application/json" in response["content"], f"{method} {path} {code}"
