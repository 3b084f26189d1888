"""schemathesis drives the live ingest service (embedded, as installed) from its own OpenAPI
document: no answer is a 5xx, every answer conforms to the document, and none shows a traceback
or an internal path. The examples per operation are bounded to keep the run short."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from pacifica.ingest.web.openapi import openapi
from tests.support.fuzz import CASES, CHECKS, check_no_leak


@pytest.fixture(scope="module")
def ingest_service(tmp_path_factory):
    from tests.conftest import embedded_stack

    # A small body limit: bundles the fuzzer makes up need not fill the disk.
    stack = embedded_stack("fuzz-ingest", tmp_path_factory.mktemp("fuzz-ingest"), max_upload_size="1 MB")
    stack.start_server()
    yield stack
    stack.stop()


# The document the service serves (test_openapi checks that it is what /openapi.json answers).
schema = schemathesis.openapi.from_dict(openapi())


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_documented_operation(case, ingest_service):
    response = case.call_and_validate(base_url=ingest_service.url, checks=CHECKS, timeout=30)
    check_no_leak(response)
    CASES["ingest"] += 1
