"""The WSGI entry point: ``uwsgi --http-socket :8066 --master --module pacifica.ingest.wsgi``.

Importing this module loads the settings (``INGEST_CONFIG``), refuses an unusable database
schema, and exposes ``application``: the same composition as ``pacifica-ingest``
(``server.compose``). Its duties (start-up recovery, the embedded worker with the default
embedded broker, expiry of failed bundles and idle uploads) start in each server process after
uWSGI forks it, or with the first request under another WSGI server; one process on the volume
runs them. They stop with the process.
"""

from __future__ import annotations

import logging
import os
import threading

import cherrypy

from . import globals as ingest_globals
from .bootstrap import check_schema, configure, configure_logging
from .rest import SERVER_DEFAULTS
from .server import compose

logger = logging.getLogger(__name__)

configure_logging()
_settings = configure().settings
check_schema()
cherrypy.config.update({key: value for key, value in SERVER_DEFAULTS.items() if key.startswith("engine.")})
# The WSGI server serves HTTP; the engine only runs the duties.
cherrypy.server.unsubscribe()
_cp_config = ingest_globals.cherrypy_config()
_app = compose(_settings, _cp_config if os.path.exists(_cp_config) else None)
_started_in: int | None = None
_start_lock = threading.Lock()


def start_duties() -> None:
    """Start the engine (and so the duties) once in this process; safe to call again."""
    global _started_in
    with _start_lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
        cherrypy.engine.start()


def stop_duties() -> None:
    """Stop the engine: the embedded worker finishes its running stages and exits."""
    if _started_in == os.getpid():
        cherrypy.engine.exit()


def application(environ, start_response):
    """The WSGI application (starts the duties on the first request if nothing started them)."""
    if _started_in != os.getpid():
        start_duties()
    return _app(environ, start_response)


try:
    import uwsgi
    from uwsgidecorators import postfork
except ImportError:  # not under uWSGI: the first request starts the duties
    pass
else:
    # The master imports this module and forks the workers; threads and children started in
    # the master would not be the workers'. So each worker starts its own engine after the fork.
    postfork(start_duties)
    uwsgi.atexit = stop_duties
