"""Liveness and readiness: ``GET /health`` answers without touching anything; ``GET /ready``
checks each thing the service needs (its database, its broker, its volume, each configured peer)
and says, for each, whether it answered and how fast.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import cherrypy
import peewee
import requests
from kombu import Connection

Check = Callable[[], None]
CHECK_TIMEOUT = 3.0


def run_checks(checks: dict[str, Check]) -> tuple[bool, dict[str, Any]]:
    """Run every check; return whether all passed, and the JSON body of ``GET /ready``."""
    results: dict[str, Any] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            check()
            result: dict[str, Any] = {"status": "ok"}
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named in the answer
            result = {"status": "down", "error": " ".join(f"{exc.__class__.__name__}: {exc}".split())[:300]}
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result
    ready = all(result["status"] == "ok" for result in results.values())
    return ready, {"status": "ready" if ready else "not ready", "checks": results}


def database(proxy: peewee.DatabaseProxy) -> Check:
    """The database answers a query."""
    def check() -> None:
        with proxy.connection_context():
            proxy.execute_sql("SELECT 1").fetchone()
    return check


def broker(url: str, transport_options: dict[str, Any] | None = None) -> Check:
    """The Celery broker at ``url`` accepts a connection (an embedded queue: its folder is writable)."""
    def check() -> None:
        folder = (transport_options or {}).get("data_folder_in")
        if folder:
            writable(folder)()
            return
        with Connection(url, connect_timeout=CHECK_TIMEOUT, transport_options=transport_options or {}) as conn:
            conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT)
    return check


def writable(directory: str) -> Check:
    """A file can be written to ``directory`` and removed again."""
    def check() -> None:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".ready-{uuid.uuid4().hex}"):
            pass
    return check


def reachable(url: str) -> Check:
    """The HTTP service at ``url`` answers (any status: it is up; the answer itself is its business)."""
    parsed = urlparse(url)
    origin = f"{parsed.scheme}://{parsed.netloc}/"

    def check() -> None:
        with contextlib.closing(requests.Session()) as session:
            session.head(origin, timeout=CHECK_TIMEOUT, allow_redirects=False)
    return check


class HealthResource:
    """``GET /health``: liveness. It answers without touching the database or a peer."""

    exposed = True

    @cherrypy.tools.json_out()
    def GET(self, **_ignored: Any) -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}


class ReadyResource:
    """``GET /ready``: readiness. 200 when every check of ``checks()`` passes, else 503; each check
    with its status and latency."""

    exposed = True

    def __init__(self, checks: Callable[[], dict[str, Check]]) -> None:
        self.checks = checks

    @cherrypy.tools.json_out()
    def GET(self, **_ignored: Any) -> dict[str, Any]:
        """Run the checks."""
        ready, body = run_checks(self.checks())
        if not ready:
            cherrypy.response.status = 503
        return body
