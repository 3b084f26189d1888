"""The CherryPy side of identities: a tool that decides every request's identity before its
body is read, and what handlers ask of it."""

from __future__ import annotations

import logging

import cherrypy

from .identity import Authenticator, AuthError, Identity

logger = logging.getLogger(__name__)

# Paths anyone who reaches the port may ask (outside protected mode): they tell nothing of anyone's data.
PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json"})


def _refuse(error: AuthError) -> cherrypy.HTTPError:
    """An error answered at once, without reading the body (see ``ingest.webjobs.refuse_body``)."""
    response = cherrypy.response
    response.headers["Connection"] = "close"
    if error.challenge:
        response.headers["WWW-Authenticate"] = error.challenge
    if hasattr(cherrypy.request.rfile, "remaining"):
        cherrypy.request.rfile.remaining = 0
    return cherrypy.HTTPError(error.status, error.message)


def _authenticate() -> None:
    request = cherrypy.request
    authenticator: Authenticator | None = getattr(request.app.runtime, "auth", None)
    request.identity, request.auth_error = None, None
    if authenticator is None:
        return
    try:
        request.identity = authenticator.authenticate(request.remote.ip, request.headers)
    except AuthError as error:
        if error.status == 401 and request.path_info in PUBLIC_PATHS:
            request.auth_error = error
            return
        logger.info("refused %s %s from %s: %s", request.method, request.path_info, request.remote.ip,
                    error.message)
        raise _refuse(error) from None


cherrypy.tools.pacifica_auth = cherrypy.Tool("on_start_resource", _authenticate, priority=20)


def current_identity(scope: str | None = None) -> Identity:
    """The identity of this request; 401 without one, 403 when it lacks ``scope``."""
    request = cherrypy.request
    identity = getattr(request, "identity", None)
    if identity is None:
        error = getattr(request, "auth_error", None) or AuthError(401, "authentication required")
        raise _refuse(error)
    if scope is not None and not identity.may(scope) and not (scope == "read" and identity.operator):
        raise _refuse(AuthError(403, f"this token lacks the {scope!r} scope"))
    return identity


def may_see(owner: str | None, identity: Identity, enforce: bool) -> bool:
    """Whether ``identity`` may see a thing owned by ``owner`` (``enforce``: owners are kept apart)."""
    return not enforce or identity.operator or owner == identity.user


def owners_apart(auth: Authenticator | None) -> bool:
    """Whether jobs, uploads and carts are kept to their owners: once any identity source is
    configured."""
    return auth is not None and auth.identities_configured()


def owner_filter(identity: Identity, auth: Authenticator | None) -> str | None:
    """The owner whose things ``identity`` may reach: None (any) for an operator, or while owners
    are not kept apart."""
    return None if identity.operator or not owners_apart(auth) else identity.user
