"""A service's WSGI application with its duties (``core.duties``) running in each server process,
and, under uWSGI, each client's share of the process's threads.

The CherryPy engine runs the duties only (the WSGI server serves HTTP). It starts in each
process after uWSGI forks it (threads and children started in the master would not be the
workers'), or with the first request under another WSGI server, and stops with the process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cherrypy

from .guarded_server import TOO_MANY, ClientShares, share_of

logger = logging.getLogger(__name__)

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


class _Released:
    """A response body that gives its client's thread back when the server closes it (PEP 3333)."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self.body, self._release = body, release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            release, self._release = self._release, lambda: None
            release()


def with_client_share(app: Callable, exempt: tuple[str, ...] = ()) -> Callable:
    """Under uWSGI, return ``app`` with each client address held to a quarter of this process's
    threads (``guarded_server``, which guards CherryPy's own server, does the same per connection);
    a request beyond its share is answered 429 at once. Loopback and ``exempt`` (the trusted
    proxies) are not counted. Elsewhere ``app`` is returned as it is."""
    try:
        import uwsgi  # noqa: PLC0415 - optional: the module exists only inside uWSGI
    except ImportError:
        return app
    threads = int(uwsgi.opt.get("threads", 1) or 1)
    shares = ClientShares(share_of(threads), exempt)
    refusal = json.dumps(TOO_MANY).encode()

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        address = shares.key(environ.get("REMOTE_ADDR", ""))
        if address is None:
            return app(environ, start_response)
        if not shares.enter(address):
            logger.warning("refused a request from %s: it already holds %d of this process's threads", address,
                           shares.per_client)
            start_response("429 Too Many Requests", [("Content-Type", "application/json"), ("Retry-After", "1"),
                                                     ("Content-Length", str(len(refusal)))])
            return [refusal]
        try:
            body = app(environ, start_response)
        except BaseException:
            shares.leave(address)
            raise
        return _Released(body, lambda: shares.leave(address))

    return application
