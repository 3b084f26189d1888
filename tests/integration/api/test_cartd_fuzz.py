"""schemathesis drives the live cartd (embedded, as installed) from its own OpenAPI document: no
answer is a 5xx, every answer conforms to the document, none shows a traceback or an internal path."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from pacifica.cartd.web.openapi import openapi
from tests.support.fuzz import CASES, CHECKS, check_no_leak
from tests.support.procs import BIN, Proc, free_port


@pytest.fixture(scope="module")
def cartd_service(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-cartd")
    (root / "empty.ini").write_text("")
    env = {"CARTD_CONFIG": str(root / "empty.ini"), "CARTD_CPCONFIG": str(root / "none.ini"),
           "CARTD_DATA_DIR": str(root / "cartd"), "INGEST_DATA_DIR": os.environ["INGEST_DATA_DIR"]}
    # Cartd reads the embedded ingest's archive: a deployment has one (else /ready says it is down).
    os.makedirs(os.path.join(os.environ["INGEST_DATA_DIR"], "archive"), exist_ok=True)
    port = free_port()
    server = Proc("cartd-fuzz", [str(BIN / "pacifica-cartd"), "-p", str(port)], root / "cartd.log", env=env).start()
    url = f"http://127.0.0.1:{port}"
    server.wait_http(url + "/", 60)
    yield url
    server.stop()


# The document the service serves (test_openapi checks that it is what /openapi.json answers).
schema = schemathesis.openapi.from_dict(openapi())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_documented_operation(case, cartd_service):
    response = case.call_and_validate(base_url=cartd_service, checks=CHECKS, timeout=30)
    check_no_leak(response)
    CASES["cartd"] += 1
