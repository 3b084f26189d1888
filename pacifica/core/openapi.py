"""Building blocks of the services' OpenAPI 3.1 documents (``GET /openapi.json``)."""

from __future__ import annotations

import json
from typing import Any

ERROR = {
    "type": "object",
    "description": "Every error is JSON: the HTTP status line and a message naming the problem.",
    "properties": {"status": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]}},
    "required": ["status", "message"],
}

HEALTH = {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}

READY = {
    "type": "object",
    "properties": {
        "status": {"enum": ["ready", "not ready"]},
        "checks": {"type": "object", "additionalProperties": {
            "type": "object",
            "properties": {"status": {"enum": ["ok", "down"]}, "latency_ms": {"type": "number"},
                           "error": {"type": "string"}},
            "required": ["status", "latency_ms"]}},
    },
    "required": ["status", "checks"],
}


def json_response(description: str, schema: dict[str, Any] | str) -> dict[str, Any]:
    """A response with a JSON body (``schema`` may name a component schema)."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    """The JSON error responses ``codes``."""
    reasons = {400: "The request is malformed; the message says how.", 401: "Authentication is required.",
               403: "Forbidden: the user may not do this.",
               404: "No such resource.", 405: "The method is not allowed here.", 409: "A conflict; see the message.",
               412: "A precondition failed (for tus: the Tus-Resumable version).",
               413: "The body is larger than the limit.", 415: "Wrong Content-Type.",
               422: "Unprocessable.", 424: "The cart failed; the message says why.",
               429: "Too many open (partial uploads): finish or end some first.",
               423: "Locked: another request is writing this resource.",
               460: "Checksum mismatch (tus).", 503: "A service this one needs (database, broker, peer) is down.",
               507: "The volume has not enough room."}
    return {str(code): json_response(reasons[code], "Error") for code in codes}


def operational_paths(title: str) -> dict[str, Any]:
    """``/metrics``, ``/health``, ``/ready`` and ``/openapi.json``, as both services serve them."""
    return {
        "/metrics": {"get": {"summary": f"{title} metrics in the Prometheus text format", "operationId": "metrics",
                             "tags": ["operations"],
                             "responses": {"200": {"description": "The metrics.",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/health": {"get": {"summary": "Liveness: answers without touching a peer", "operationId": "health",
                            "tags": ["operations"], "responses": {"200": json_response("Up.", "Health")}}},
        "/ready": {"get": {"summary": "Readiness: the database, the broker, the volume and each peer",
                           "operationId": "ready", "tags": ["operations"],
                           "responses": {"200": json_response("Everything answers.", "Ready"),
                                         "503": json_response("Something is down; its check says what.", "Ready")}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "tags": ["operations"],
                                  "responses": {"200": json_response("The OpenAPI document.", {"type": "object"})}}},
    }


class OpenApiResource:
    """``GET /openapi.json``: the service's document."""

    exposed = True

    def __init__(self, build: Any) -> None:
        self.build = build

    def GET(self, **_ignored: Any) -> bytes:
        """The OpenAPI document, as JSON."""
        return json.dumps(self.build()).encode()


def document(title: str, version: str, description: str, paths: dict[str, Any],
             schemas: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.1 document."""
    every = {**paths, **operational_paths(title)}
    # Any request may be refused before its handler: 401 without a valid identity, 403 in protected
    # mode (a non-loopback client and no identity source) or for a token that lacks the scope.
    for operations in every.values():
        for method, operation in operations.items():
            if method != "parameters":
                for code, answer in errors(401, 403).items():
                    operation["responses"].setdefault(code, answer)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": every,
        "components": {"schemas": {"Error": ERROR, "Health": HEALTH, "Ready": READY, **schemas}},
    }
