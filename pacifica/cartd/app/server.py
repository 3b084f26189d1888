"""The one composition of a running cartd, shared by ``pacifica-cartd`` and the WSGI module.

The REST application plus its duties (``core.duties``), run by the one process holding
``<data_dir>/.duties.lock`` (beside the embedded queue, whose one consumer it guards): with the
embedded broker, start-up recovery of unfinished carts;
and the embedded Celery worker (by default with the embedded broker).
"""

from __future__ import annotations

import os

import cherrypy
from cherrypy.process.wspbus import Bus

from ...core.duties import Duties
from ...core.worker import EmbeddedWorker, worker_command
from ..common.settings import Settings, broker_embedded, run_embedded_worker
from ..db.models import DB
from ..jobs.recovery import recover
from ..jobs.runtime import Runtime
from ..web.resources import make_app


def _recover(settings: Settings) -> None:
    with DB.connection_context():
        recover(settings.data_dir)


def duties(settings: Settings, bus: Bus) -> Duties:
    """Cartd's duties, for ``bus`` (the CherryPy engine)."""
    worker = None
    if run_embedded_worker(settings):
        env = {"CARTD_CONFIG": settings.config_file} if settings.config_file else {}
        worker = EmbeddedWorker(worker_command("pacifica.cartd.tasks", settings.worker_concurrency, "cartd"), env)
    on_lead = (lambda: _recover(settings)) if broker_embedded(settings) else None
    return Duties(bus, os.path.join(settings.data_dir, ".duties.lock"), on_lead, worker)


def compose(rt: Runtime, cp_config: str | None, bus: Bus | None = None) -> cherrypy.Application:
    """Build the application serving ``rt`` and subscribe its duties to the engine; return the application."""
    app = make_app(rt, cp_config)
    duties(rt.settings, bus or cherrypy.engine).subscribe()
    return app
