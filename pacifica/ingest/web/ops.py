"""What operators and their monitoring read: ``GET /metrics``, and what ``GET /ready`` checks."""

from __future__ import annotations

from typing import Any

import cherrypy

from ...core import health
from ...core.metrics import DatabaseCollector, exposition
from ..common.settings import EMBEDDED
from ..db import models
from ..jobs.celery_app import celery_config
from ..jobs.gauges import state_metrics
from ..volume.resumable import TusStore
from .kit import current_runtime


class Metrics:
    """``GET /metrics``: the Prometheus text format."""

    exposed = True

    @staticmethod
    def GET(**_ignored: Any) -> bytes:
        """Every metric of the service, across its processes on this machine."""
        rt = current_runtime()
        uploads = TusStore(rt.spool, rt.settings.upload_expiry)
        collector = DatabaseCollector(lambda: state_metrics(rt.settings.volume_path, uploads.unfinished))
        body, content_type = exposition([collector])
        cherrypy.response.headers["Content-Type"] = content_type
        return body


def readiness_checks() -> dict[str, health.Check]:
    """What ``GET /ready`` checks: the database, the broker, the volume, each HTTP peer."""
    rt = current_runtime()
    settings = rt.settings
    options = celery_config(settings).get("broker_transport_options")
    checks = {
        "database": health.database(models.DB),
        "broker": health.broker(settings.broker_url, options if settings.broker_embedded else None),
        "volume": health.writable(settings.volume_path),
    }
    for peer, url in (("uniqueid", settings.uniqueid_url), ("policy", settings.policy_url),
                      ("archiveinterface", settings.archive_url), ("metadata", settings.metadata_url)):
        if url.startswith(("http://", "https://")):
            checks[peer] = health.reachable(url)
        elif peer == "archiveinterface":
            checks[peer] = health.writable(settings.data_path("archive") if url == EMBEDDED else url[len("file://"):])
    return checks
