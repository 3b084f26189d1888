"""A test host of our own: a network namespace joined to this machine by a veth pair.

A client in it reaches a server here from an address that is not loopback, which is what an
instrument PC or an attacker on the facility network is. Nothing is routed beyond the pair.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

_numbers = itertools.count(1)


@dataclass
class TestHost:
    """The namespace, the address this machine has on the pair and the client's address."""

    name: str
    host_address: str
    client_address: str

    def python(self, code: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        """Run ``code`` with this interpreter inside the namespace."""
        return subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside the namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def test_host() -> Iterator[TestHost]:
    """A fresh namespace with a /30 on a veth pair (10.231.N.0/30), removed afterwards.

    It fails loudly where namespaces cannot be made: the tests that need one are not skipped.
    """
    number = (os.getpid() + next(_numbers)) % 250 + 1
    name, outside, inside = f"pit{number}", f"pit{number}h", f"pit{number}n"
    host, client = f"10.231.{number}.1", f"10.231.{number}.2"
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "delete", name)
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("link", "delete", outside)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("addr", "add", f"{host}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{client}/30", "dev", inside)
        _ip("netns", "exec", name, "ip", "link", "set", inside, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield TestHost(name, host, client)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "delete", outside)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "delete", name)
