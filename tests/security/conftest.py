"""What the security tests share: embedded ingest stacks, tokens made with the CLI, and a test
host in a network namespace of its own (a client that is not loopback)."""

from __future__ import annotations

import pytest

from tests.conftest import embedded_stack
from tests.support.netns import test_host


@pytest.fixture
def remote():
    """A client host on the far side of a veth pair."""
    with test_host() as host:
        yield host


@pytest.fixture
def ingest(tmp_path):
    """Start embedded ingest stacks: ``ingest(name, address=..., **ingest_settings)``; all stopped after."""
    started = []

    def start(name: str = "sec", address: str = "127.0.0.1", sections: dict | None = None, **settings: str):
        stack = embedded_stack(name, tmp_path / name, **settings)
        for section, values in (sections or {}).items():
            stack.settings.setdefault(section, {}).update(values)
        stack.write_config()
        stack.start_server(address)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def make_token(stack, user: str, scope: str = "upload,read", *extra: str) -> str:
    """A token made with ``pacifica-ingest-cmd token create``: alone on stdout."""
    made = stack.cmd("token", "create", "--user", user, "--scope", scope, *extra)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pac_") and len(lines[0]) >= 40, made.stdout
    return lines[0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
