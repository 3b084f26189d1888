"""What operators and their monitoring read: ``GET /metrics``, and what ``GET /ready`` checks.

These names shadow carts of the same uid (``GET /metrics`` is never the cart "metrics").
"""

from __future__ import annotations

import os
from typing import Any

import cherrypy

from ...core import health
from ...core.metrics import DatabaseCollector, exposition
from ..common.settings import EMBEDDED, broker_embedded
from ..db.models import DB
from ..jobs.celery_app import celery_config
from ..jobs.gauges import state_metrics
from ..jobs.runtime import Runtime


def _runtime() -> Runtime:
    return cherrypy.request.app.runtime


class Metrics:
    """``GET /metrics``: the Prometheus text format."""

    exposed = True

    @staticmethod
    def GET(**_ignored: Any) -> bytes:
        """Every metric of cartd, across its processes on this machine."""
        volume = _runtime().settings.volume_path
        body, content_type = exposition([DatabaseCollector(lambda: state_metrics(volume))])
        cherrypy.response.headers["Content-Type"] = content_type
        return body


def readiness_checks() -> dict[str, health.Check]:
    """What ``GET /ready`` checks: the database, the broker, the volume, the archive."""
    settings = _runtime().settings
    embedded = broker_embedded(settings)
    options = celery_config(settings).get("broker_transport_options") if embedded else None
    checks = {
        "database": health.database(DB),
        "broker": health.broker(settings.broker_url, options),
        "volume": health.writable(settings.volume_path),
    }
    url = settings.archive_url.strip()
    if url.startswith(("http://", "https://")):
        checks["archiveinterface"] = health.reachable(url)
    else:
        root = settings.embedded_archive if url.rstrip("/") == EMBEDDED.rstrip("/") else url[len("file://"):]
        checks["archiveinterface"] = lambda: None if os.path.isdir(root) else _missing(root)
    return checks


def _missing(path: str) -> None:
    raise FileNotFoundError(f"the archive directory {path} does not exist")
