"""Cartd's OpenAPI 3.1 document, served at ``GET /openapi.json`` (seed 004, chapter 3)."""

from __future__ import annotations

import functools
from typing import Any

from ...core.openapi import document, errors, json_response

MESSAGE = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
UID = {"name": "uid", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^[^/\\]+$"},
       "description": "The cart's name, chosen by the client."}
CART_REQUEST = {
    "type": "object",
    "properties": {
        "fileids": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "properties": {"id": {"type": ["string", "integer"], "description": "The file's id in the archive."},
                           "path": {"type": "string", "description": "Where the file goes in the cart."},
                           "hashtype": {"type": "string"}, "hashsum": {"type": "string"}},
            "required": ["id", "path", "hashtype", "hashsum"]}},
        "bundle": {"type": "boolean", "description": "Write the tar when the cart is made ([cartd] bundle_task)."},
    },
    "required": ["fileids"],
}


def _paths() -> dict[str, Any]:
    return {
        "/": {"get": {"summary": "The service is up", "operationId": "root", "tags": ["carts"],
                      "responses": {"200": json_response("Up.", "Message")}}},
        "/{uid}": {
            "parameters": [UID],
            "get": {"summary": "Download the cart as a tar (202 while it is not ready)", "operationId": "download",
                    "tags": ["carts"],
                    "parameters": [{"name": "filename", "in": "query", "required": False,
                                    "schema": {"type": "string"}, "description": "The download's file name."}],
                    "responses": {"200": {"description": "The tar.", "content": {"application/octet-stream": {
                                      "schema": {"type": "string", "format": "binary"}}}},
                                  "206": {"description": "The byte range asked for (Range).",
                                          "content": {"application/octet-stream": {
                                              "schema": {"type": "string", "format": "binary"}}}},
                                  "202": json_response("The cart is not ready yet.", "Message"),
                                  "416": {"description": "The range lies past the end of the tar."},
                                  **errors(404, 424, 503)}},
            "head": {"summary": "The cart's status: X-Pacifica-Status, X-Pacifica-Message and progress headers",
                     "operationId": "status", "tags": ["carts"],
                     "responses": {"204": {"description": "The status is in the headers."},
                                   "404": {"description": "No such cart."},
                                   "503": {"description": "The database is down."}}},
            "post": {"summary": "Make the cart from files on the archive (with retry=true: fetch its failed "
                                "files again)", "operationId": "create", "tags": ["carts"],
                     "parameters": [{"name": "retry", "in": "query", "required": False,
                                     "schema": {"enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}}],
                     "requestBody": {"required": False, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/CartRequest"}}}},
                     "responses": {"201": json_response("Making the cart has begun.", "Message"),
                                   "202": json_response("The retry has begun.", "Message"),
                                   **errors(400, 404, 409, 413, 503)}},
            "delete": {"summary": "Delete the cart and its files", "operationId": "delete", "tags": ["carts"],
                       "responses": {"200": json_response("Deleted.", "Message"), **errors(404, 503)}},
        },
    }


@functools.cache
def openapi() -> dict[str, Any]:
    """The document."""
    return document("Pacifica Cartd", "1.0.0", "Stages archived files, bundles them into a tar and serves "
                    "the download.", _paths(), {"Message": MESSAGE, "CartRequest": CART_REQUEST})
