"""What the schemathesis runs share: the checks every answer must pass, and the case counts."""

from __future__ import annotations

import collections
import re
import sys

import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# How many cases each service's run sent (printed at the end of the session).
CASES: collections.Counter = collections.Counter()

# A Python traceback, or a path of this machine's installation, must never reach a client.
LEAKS = re.compile("|".join([r"Traceback \(most recent call last\)", r'File "/', re.escape(sys.prefix),
                             r"site-packages", r"/pacifica/(?:ingest|cartd|core)/"]))


def check_no_leak(response) -> None:
    """Fail if the body shows a traceback or an internal path."""
    text = response.content.decode("utf-8", "replace") if response.content else ""
    found = LEAKS.search(text)
    assert found is None, f"the answer shows {found.group(0)!r}: {text[:300]}"


@schemathesis.serializer("application/offset+octet-stream")
def _offset_octets(ctx, value):
    """tus PATCH bodies are raw bytes, as application/octet-stream."""
    return value if isinstance(value, bytes) else str(value).encode()
