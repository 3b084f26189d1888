"""A service's WSGI application with its duties (``core.duties``) running in each server process.

The CherryPy engine runs the duties only (the WSGI server serves HTTP). It starts in each
process after uWSGI forks it (threads and children started in the master would not be the
workers'), or with the first request under another WSGI server, and stops with the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import cherrypy

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
    """Stop the engine: an embedded worker finishes its running tasks and exits."""
    if _started_in == os.getpid():
        cherrypy.engine.exit()


def with_duties(app: Callable) -> Callable:
    """Return the WSGI application serving ``app``, with the engine's duties started as above."""
    cherrypy.server.unsubscribe()

    def application(environ, start_response):
        if _started_in != os.getpid():
            start_duties()
        return app(environ, start_response)

    try:
        import uwsgi  # noqa: PLC0415 - optional: the module exists only inside uWSGI
        from uwsgidecorators import postfork  # noqa: PLC0415 - optional, as above
    except ImportError:  # not under uWSGI: the first request starts the duties
        pass
    else:
        postfork(start_duties)
        uwsgi.atexit = stop_duties
    return application
