"""Cartd's OpenAPI document is valid OpenAPI 3.1 and covers exactly what is served."""

from __future__ import annotations

from openapi_spec_validator import validate

from pacifica.cartd.web.openapi import openapi
from pacifica.cartd.web.resources import make_app
from tests.support.openapi import documented_routes, served_routes


def test_the_document_is_valid_openapi_3_1():
    validate(openapi())


def test_the_document_and_the_served_routes_are_the_same():
    served = served_routes(make_app(None).root)
    assert documented_routes(openapi()) == served
    assert {("GET", "/"), ("HEAD", "/"), ("POST", "/"), ("DELETE", "/"), ("GET", "/metrics")} <= served
