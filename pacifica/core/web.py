"""Web answers both services give: JSON error pages, never a traceback."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import IO, Any

import cherrypy

from . import jsonbody
from .auth import web as _auth_web  # noqa: F401 - registers the pacifica_auth tool
from .guarded_server import GuardedServer
from .redact import public_text

logger = logging.getLogger(__name__)


def error_page_default(**kwargs: Any) -> str:
    """The default error page: always JSON, never a traceback."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    return json.dumps({"status": kwargs.get("status"), "message": public_text(kwargs.get("message") or "", 4096)})


def unexpected_error() -> None:
    """Answer an unexpected exception with a JSON 500 and log its traceback."""
    logger.error("unhandled error in %s %s", cherrypy.request.method, cherrypy.request.path_info,
                 exc_info=sys.exc_info())
    cherrypy.response.status = 500
    cherrypy.response.headers["Content-Type"] = "application/json"
    cherrypy.response.body = json.dumps({
        "status": "500 Internal Server Error",
        "message": "internal error; the server log has the details",
    }).encode()


# Every answer: no sniffing a JSON error into HTML, no framing, no referrer leaking job URLs.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" even with the
    # jobs page's own forms, and the page could no longer tell them from a sandboxed attacker's.
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
}


def _security_headers() -> None:
    cherrypy.response.headers.update(SECURITY_HEADERS)


cherrypy.tools.security_headers = cherrypy.Tool("on_start_resource", _security_headers, priority=10)


class _ChunkedBody:
    """A chunked request body whose malformed framing is answered 400: cheroot raises a bare
    ``ValueError`` from any read, which every handler would otherwise turn into a 500."""

    def __init__(self, rfile: Any) -> None:
        self._rfile = rfile

    def _refused(self, exc: ValueError) -> cherrypy.HTTPError:
        return refuse_body(400, f"the chunked request body is malformed: {str(exc)[:120]}")

    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes of the body."""
        try:
            return self._rfile.read(size)
        except ValueError as exc:
            raise self._refused(exc) from None

    def readline(self, size: int | None = None) -> bytes:
        """Read a line of the body."""
        try:
            return self._rfile.readline(size)
        except ValueError as exc:
            raise self._refused(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


def _request_framing() -> None:
    """Refuse a request that frames its body two ways (``Content-Length`` and
    ``Transfer-Encoding`` together, the shape of request smuggling through a proxy that reads the
    other one), and answer a malformed chunked body 400."""
    headers = cherrypy.request.headers
    if "Transfer-Encoding" in headers and "Content-Length" in headers:
        raise refuse_body(400, "a request may not carry both Content-Length and Transfer-Encoding")
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        cherrypy.request.rfile = _ChunkedBody(cherrypy.request.rfile)


cherrypy.tools.request_framing = cherrypy.Tool("on_start_resource", _request_framing, priority=15)


def _unpadded() -> None:
    """Take off the spaces CherryPy pads short error bodies with (up to 513 bytes, for Internet
    Explorer 5): a client reads the JSON error as it was written."""
    response = cherrypy.serving.response
    status = int(str(response.status or "200").split()[0])
    if status < 400:
        return
    body = response.collapse_body()
    trimmed = body.rstrip(b" ")
    if len(trimmed) != len(body):
        response.body = trimmed
        response.headers["Content-Length"] = str(len(trimmed))


cherrypy.tools.unpadded = cherrypy.Tool("before_finalize", _unpadded)


def app_config(release_tool: str) -> dict[str, dict[str, Any]]:
    """The application config of a JSON service on the MethodDispatcher, with the CherryPy tool
    ``release_tool`` giving the request's database connection back after each answer."""
    return {
        "/": {
            "request.dispatch": cherrypy.dispatch.MethodDispatcher(),
            "request.show_tracebacks": False,
            "request.error_response": unexpected_error,
            "error_page.default": error_page_default,
            "tools.response_headers.on": True,
            "tools.response_headers.headers": [("Content-Type", "application/json")],
            f"tools.{release_tool}.on": True,
            "tools.security_headers.on": True,
            "tools.unpadded.on": True,
            "tools.request_framing.on": True,
            "tools.pacifica_auth.on": True,
        }
    }


@dataclasses.dataclass(frozen=True)
class SecondServer:
    """Another port the same process serves, with an application of its own (the S3 door)."""

    build_app: Callable[[], Any]
    host: str
    port: int
    certificate: str = ""
    private_key: str = ""


def _start_second(second: SecondServer, exempt: tuple[str, ...]) -> None:
    """Subscribe a guarded server for ``second`` to the engine, settings as the main server's."""
    server = cherrypy._cpserver.Server()
    for name in ("thread_pool", "socket_timeout", "max_request_body_size", "socket_queue_size"):
        setattr(server, name, getattr(cherrypy.server, name))
    server.socket_host, server.socket_port = second.host, second.port
    if second.certificate:
        server.ssl_module = "builtin"
        server.ssl_certificate, server.ssl_private_key = second.certificate, second.private_key
    check_port(second.host, second.port)
    server.instance = GuardedServer(server, exempt)
    server.instance.wsgi_app = second.build_app()
    server.subscribe()


def serve(build_app: Callable[[], Any], defaults: dict[str, Any], cp_config: str | None,
          address: str | None, port: int | None, exempt: tuple[str, ...] = (),
          seconds: tuple[SecondServer, ...] = ()) -> None:
    """Run an application on CherryPy's own server until the engine exits.

    The settings come from ``defaults`` (address and port included), then the CherryPy config
    file, then ``address``/``port`` when given (as the published services did). SIGTERM (docker
    stop, systemd) and SIGHUP stop the server instead of being ignored until SIGKILL. The server is
    ``guarded_server.GuardedServer``: slow or greedy clients cannot hold its threads.
    """
    cherrypy.config.update(defaults)
    if cp_config:
        cherrypy.config.update(cp_config)
    if address is not None:
        cherrypy.config.update({"server.socket_host": address})
    if port is not None:
        cherrypy.config.update({"server.socket_port": port})
    check_port(cherrypy.config.get("server.socket_host"), cherrypy.config.get("server.socket_port"))
    cherrypy.tree.mount(build_app(), "")
    # The guarded server: a deadline for request headers and a per-client share of the threads
    # (``exempt``: networks that share none, such as the trusted proxies).
    cherrypy.server.instance = GuardedServer(cherrypy.server, exempt)
    for second in seconds:
        _start_second(second, exempt)
    if hasattr(cherrypy.engine, "signal_handler"):
        cherrypy.engine.signal_handler.subscribe()
    cherrypy.engine.start()
    cherrypy.engine.block()


# The exit status of a server whose port cannot be had (documented in each server's --help).
EXIT_PORT_IN_USE = 3


class PortUnavailable(Exception):
    """The address and port the server is to listen on cannot be had: one line says why."""


def check_port(host: str | None, port: int | None) -> None:
    """Raise ``PortUnavailable`` if ``host``:``port`` cannot be bound now, before anything starts
    (CherryPy would otherwise start, fail, and print two tracebacks while it stops again)."""
    if not port:
        return
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            probe.bind(address)
    except OSError as exc:
        where = f"{host or '*'}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"port {port} is in use ({where}: is another server running?); "
                                  "pass -p PORT to listen on another") from None
        if exc.errno == errno.EACCES:
            raise PortUnavailable(f"not allowed to listen on {where} (ports below 1024 need privileges); "
                                  "pass -p PORT to listen on another") from None
        raise PortUnavailable(f"cannot listen on {where}: {exc.strerror or exc}; "
                              "check -a ADDRESS and -p PORT") from None


def refuse_body(status: int, message: str) -> cherrypy.HTTPError:
    """An error for a request whose body we will not read, answered at once.

    cheroot reads and discards an unread body before answering (except for 413), which for a
    multi-gigabyte upload means the refusal arrives only after the whole body. Marking the body
    as consumed skips that, and ``Connection: close`` tells the client not to reuse the socket.
    """
    cherrypy.response.headers["Connection"] = "close"
    if hasattr(cherrypy.request.rfile, "remaining"):
        cherrypy.request.rfile.remaining = 0
    return cherrypy.HTTPError(status, message)


class RetryLater(cherrypy.HTTPError):
    """An error that tells the client when to try again (``Retry-After``, in seconds): CherryPy
    drops that header from error answers, so it is set after CherryPy's own clean-up."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after

    def set_response(self) -> None:
        """CherryPy's error answer, with ``Retry-After``."""
        super().set_response()
        cherrypy.serving.response.headers["Retry-After"] = str(int(self.retry_after))


def refuse_body_later(status: int, message: str, retry_after: int) -> cherrypy.HTTPError:
    """``refuse_body`` that also says when to try again."""
    refuse_body(status, message)
    return RetryLater(status, message, retry_after)


def spooled_json(limit: int, what: str, directory: str) -> tuple[IO[bytes], jsonbody.Outline]:
    """The request body, copied to a temporary file in ``directory`` and checked to be JSON in one
    streaming pass: the file (for ``jsonbody.items``) and the document's outline. 413 above
    ``limit`` bytes, 400 if it is not JSON or nests too deep. Whatever its size, the server holds
    a block of it at a time."""
    declared = cherrypy.request.headers.get("Content-Length")
    os.makedirs(directory, exist_ok=True)
    handle = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - handed to the caller, who closes it
    try:
        jsonbody.spool_limited(cherrypy.request.rfile, handle, limit,
                               int(declared) if declared and declared.isdigit() else None)
        return handle, jsonbody.outline(handle)
    except jsonbody.TooLarge:
        handle.close()
        raise refuse_body(413, f"{what} larger than {limit} bytes") from None
    except jsonbody.JsonRefused as exc:
        handle.close()
        raise cherrypy.HTTPError(400, str(exc)) from None
    except OSError as exc:
        handle.close()
        if exc.errno == errno.ENOSPC:
            raise refuse_body(507, f"the volume is full: {what} cannot be kept") from None
        raise
    except BaseException:
        handle.close()
        raise
