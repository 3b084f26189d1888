"""The one composition of a running ingest service, shared by ``pacifica-ingest`` and the WSGI module.

A service is the REST application plus its duties (``core.duties``): start-up recovery of
unfinished jobs (embedded broker), the embedded Celery worker, expiry of failed bundles and of
idle resumable uploads, and the queueing of scheduled fixity audits, run by the one process
holding ``<data_dir>/.duties.lock`` (beside the embedded queue, whose one consumer it guards).
"""

from __future__ import annotations

import os

import cherrypy
from cherrypy.process.wspbus import Bus

from ...core.duties import Chore, Duties
from ...core.worker import EmbeddedWorker, worker_command
from ..db import models
from ..jobs.fixity import schedule_due
from ..jobs.housekeeping import expire_failed_bundles, expire_s3, expire_uploads
from ..jobs.recovery import recover
from ..jobs.runtime import Runtime
from ..web.resources import make_app
from ..web.s3.door import store_of
from ..web.uploads import store

FAILED_EXPIRY_SECONDS = 3600.0


def _recover(rt: Runtime) -> None:
    with models.DB.connection_context():
        recover(rt.settings.data_path("queue"), rt.spool)


def _expire_failed(rt: Runtime) -> None:
    with models.DB.connection_context():
        expire_failed_bundles(rt.spool, rt.settings.failed_retention)


def _expire_uploads(rt: Runtime) -> None:
    with models.DB.connection_context():
        expire_uploads(store(rt))
        expire_s3(store_of(rt), rt.settings.upload_expiry * 3600)


def _schedule_fixity(rt: Runtime) -> None:
    with models.DB.connection_context():
        schedule_due(rt.settings)


def duties(rt: Runtime, bus: Bus) -> Duties:
    """The ingest service's duties, for ``bus`` (the CherryPy engine)."""
    settings = rt.settings
    worker = None
    if settings.run_embedded_worker:
        env = {"INGEST_CONFIG": settings.config_file} if settings.config_file else {}
        worker = EmbeddedWorker(worker_command("pacifica.ingest.tasks", settings.worker_concurrency), env)
    chores = []
    if settings.failed_retention > 0:
        chores.append(Chore("expire failed bundles", FAILED_EXPIRY_SECONDS, lambda: _expire_failed(rt)))
    if settings.upload_expiry > 0:
        # Idle uploads are checked a few times per expiry period, at most hourly.
        every = min(3600.0, max(1.0, settings.upload_expiry * 3600 / 4))
        chores.append(Chore("expire idle uploads", every, lambda: _expire_uploads(rt)))
    if settings.fixity_interval > 0:
        chores.append(Chore("schedule fixity audits", settings.fixity_interval, lambda: _schedule_fixity(rt)))
    on_lead = (lambda: _recover(rt)) if settings.broker_embedded else None
    return Duties(bus, os.path.join(settings.data_dir, ".duties.lock"), on_lead, worker, chores)


def compose(rt: Runtime, cp_config: str | None, bus: Bus | None = None) -> cherrypy.Application:
    """Build the application serving ``rt`` and subscribe its duties to the engine; return the application."""
    app = make_app(rt, cp_config)
    duties(rt, bus or cherrypy.engine).subscribe()
    return app
