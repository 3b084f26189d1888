"""The one composition of a running ingest service, shared by ``pacifica-ingest`` and the WSGI module.

A service is the REST application plus its duties (``core.duties``): start-up recovery of
unfinished jobs (embedded broker), the embedded Celery worker, expiry of failed bundles and
expiry of idle resumable uploads, run by the one process holding ``<data_dir>/.duties.lock``
(beside the embedded queue, whose one consumer it guards).
"""

from __future__ import annotations

import os

import cherrypy

from ..core.duties import Chore, Duties
from . import orm
from .config import Settings

FAILED_EXPIRY_SECONDS = 3600.0


def _recover(settings: Settings) -> None:
    from .bootstrap import runtime
    from .recovery import recover

    with orm.DB.connection_context():
        recover(settings.data_path("queue"), runtime().spool)


def _expire_failed(settings: Settings) -> None:
    from .bootstrap import runtime
    from .housekeeping import expire_failed_bundles

    with orm.DB.connection_context():
        expire_failed_bundles(runtime().spool, settings.failed_retention)


def _expire_uploads() -> None:
    from .tus_rest import expire_uploads, store

    with orm.DB.connection_context():
        expire_uploads(store())


def duties(settings: Settings, bus) -> Duties:
    """The ingest service's duties, for ``bus`` (the CherryPy engine)."""
    worker = None
    if settings.run_embedded_worker:
        from ..core.worker import EmbeddedWorker, worker_command

        env = {"INGEST_CONFIG": settings.config_file} if settings.config_file else {}
        worker = EmbeddedWorker(worker_command("pacifica.ingest.tasks", settings.worker_concurrency), env)
    chores = []
    if settings.failed_retention > 0:
        chores.append(Chore("expire failed bundles", FAILED_EXPIRY_SECONDS, lambda: _expire_failed(settings)))
    if settings.upload_expiry > 0:
        # Idle uploads are checked a few times per expiry period, at most hourly.
        every = min(3600.0, max(1.0, settings.upload_expiry * 3600 / 4))
        chores.append(Chore("expire idle uploads", every, _expire_uploads))
    on_lead = (lambda: _recover(settings)) if settings.broker_embedded else None
    return Duties(bus, os.path.join(settings.data_dir, ".duties.lock"), on_lead, worker, chores)


def compose(settings: Settings, cp_config: str | None, bus=None) -> cherrypy.Application:
    """Build the application and subscribe its duties to the engine; return the application."""
    from .rest import make_app

    app = make_app(cp_config)
    duties(settings, bus or cherrypy.engine).subscribe()
    return app
