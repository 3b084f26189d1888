"""The ingest service's OpenAPI 3.1 document, served at ``GET /openapi.json``.

``tests/unit/ingest/web/test_openapi.py`` checks it against the specification and against the
routes the application serves; schemathesis drives the live service from it.
"""

from __future__ import annotations

import functools
from typing import Any

from ...core.openapi import document, errors, json_response

JOB_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}

EVENT = {
    "type": "object",
    "properties": {"time": {"type": "string"}, "state": {"type": "string"}, "task": {"type": "string"},
                   "task_percent": {"type": "string"}, "message": {"type": "string"},
                   "operator": {"type": ["string", "null"]}},
    "required": ["time", "state", "task", "task_percent", "message", "operator"],
}

JOB_STATE = {
    "type": "object",
    "description": "A job's state, as the published service answered, with its transfer's progress.",
    "properties": {
        "job_id": {"type": "integer"}, "state": {"enum": ["OK", "FAILED"]},
        "task": {"type": "string", "description": "The stage: UPLOADING, open tar, load metadata, "
                 "Policy Validation, ingest files, move files or ingest metadata."},
        "task_percent": {"type": "string"}, "complete": {"type": "boolean"},
        "updated": {"type": "string"}, "created": {"type": "string"},
        "exception": {"type": "string", "description": "Why the job FAILED (empty otherwise)."},
        "bytes_done": {"type": "integer"}, "bytes_total": {"type": "integer"},
        "files_done": {"type": "integer"}, "files_total": {"type": "integer"},
        "history": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        "files": {"type": "array", "items": {"type": "object", "properties": {
            "file_id": {"type": "integer"}, "path": {"type": "string"}, "size": {"type": "integer"},
            "hashtype": {"type": "string"}, "hashsum": {"type": "string"}, "outcome": {"type": "string"},
            "stored_size": {"type": ["integer", "null"]}}}},
        "files_more": {"type": "boolean"},
    },
    "required": ["job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"],
}

VALIDATION = {
    "type": "object",
    "properties": {"valid": {"type": "boolean"}, "problems": {"type": "array", "items": {"type": "string"}}},
    "required": ["valid", "problems"],
}

_COUNT = {"type": ["integer", "null"]}
QUOTAS = {
    "type": "object",
    "properties": {"user": {"type": "string"}, "quotas": {"type": "array", "items": {
        "type": "object",
        "properties": {"scope": {"enum": ["user", "project", "instrument"]}, "name": {"type": "string"},
                       "max_bytes": _COUNT, "max_files": _COUNT, "max_uploads": _COUNT, "period_seconds": _COUNT,
                       "used_bytes": {"type": "integer"}, "used_files": {"type": "integer"},
                       "held_bytes": {"type": "integer"}, "held_files": {"type": "integer"},
                       "left_bytes": _COUNT, "left_files": _COUNT, "uploading": {"type": "integer"}},
        "required": ["scope", "name", "max_bytes", "max_files", "used_bytes", "used_files", "left_bytes",
                     "left_files"]}}},
    "required": ["user", "quotas"],
}

METADATA_DOCUMENT = {"type": "array", "items": {"type": "object"},
                     "description": "Pacifica metadata: a list of objects with a destinationTable."}

USER = {"name": "X-Http-Authed-User", "in": "header", "required": False, "schema": {"type": "string"},
        "description": "The authenticated user, set by the authenticating proxy ([ingest] auth_header)."}
CALLBACK_HEADER = {"name": "X-Pacifica-Callback", "in": "header", "required": False,
                   "schema": {"type": "string"}, "description": "URL to POST the job's final state to."}
CALLBACK_QUERY = {"name": "callback_url", "in": "query", "required": False, "schema": {"type": "string"},
                  "description": "The same as the X-Pacifica-Callback header."}
TUS_VERSION = {"name": "Tus-Resumable", "in": "header", "required": True, "schema": {"const": "1.0.0"}}
UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^([0-9]{1,19}|p[0-9a-f]{32})$"},
             "description": "The job id the upload was created as, or a partial upload's id (p + 32 hex digits)."}
OFFSET_BODY = {"application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}}


HTML = {"text/html": {"schema": {"type": "string"}}}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": JOB_ID_SCHEMA}


def _jobs_page() -> dict[str, Any]:
    return {
        "/jobs": {"get": {
            "summary": "The recent jobs, for people (HTML): user, state, stage, progress, size, age, duration",
            "operationId": "jobsPage", "tags": ["jobs page"],
            "parameters": [USER, {"name": "state", "in": "query", "required": False,
                                  "schema": {"type": "string"}, "description": "running, OK or FAILED"},
                           {"name": "user", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The page.", "content": HTML}, **errors(401, 503)}}},
        "/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {"summary": "One job, for people (HTML): its history, files and exception",
                    "operationId": "jobPage", "tags": ["jobs page"], "parameters": [USER],
                    "responses": {"200": {"description": "The page.", "content": HTML},
                                  **errors(400, 401, 404, 503)}},
            "post": {"summary": "An operator's action: retry a FAILED job from its failed stage, or fail an "
                                "unfinished one ([ingest] operators only)", "operationId": "jobAction",
                     "tags": ["jobs page"], "parameters": [USER],
                     "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
                         "schema": {"type": "object", "properties": {"action": {"enum": ["retry", "fail"]}},
                                    "required": ["action"]}}}},
                     "responses": {"303": {"description": "Done; see the job's page (Location)."},
                                   **errors(400, 401, 403, 404, 409, 415, 503)}}},
    }


def _accepted(description: str) -> dict[str, Any]:
    return {"200": json_response(description, "JobState")}


def _paths() -> dict[str, Any]:
    upload = {
        "summary": "Upload a bundle (a tar holding metadata.txt and data/...) as the request body",
        "tags": ["jobs"], "parameters": [USER, CALLBACK_HEADER, CALLBACK_QUERY],
        "requestBody": {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}},
        "responses": {**_accepted("The job, as accepted (UPLOADING)."),
                      **errors(400, 401, 413, 429, 503, 507)},
    }
    return {
        "/": {"get": {"summary": "The service is up", "operationId": "root", "tags": ["jobs"],
                      "responses": {"200": json_response("Up.", {
                          "type": "object", "properties": {"message": {"type": "string"}},
                          "required": ["message"]})}}},
        "/get_state": {"get": {
            "summary": "A job's state, optionally with its history", "operationId": "getState", "tags": ["jobs"],
            "parameters": [
                {"name": "job_id", "in": "query", "required": True, "schema": JOB_ID_SCHEMA},
                {"name": "history", "in": "query", "required": False,
                 "schema": {"enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}},
                {"name": "files", "in": "query", "required": False,
                 "schema": {"enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]},
                 "description": "Also the files archived for the job, with the digest recorded for each."},
                {"name": "files_after", "in": "query", "required": False, "schema": JOB_ID_SCHEMA,
                 "description": "The next page of files: those after this file id."},
                {"name": "verify", "in": "query", "required": False,
                 "schema": {"enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]},
                 "description": "With files: ask the archive the size it holds of each now (stored_size)."}],
            "responses": {"200": json_response("The job's state.", "JobState"), **errors(400, 404, 503)}}},
        "/upload": {"post": {**upload, "operationId": "upload"}},
        "/ingest": {"post": {**upload, "operationId": "ingest", "summary": "The same as POST /upload"}},
        "/move": {"post": {
            "summary": "Move files already on the archive's filesystem in, by a metadata document whose "
                       "Files objects name a source path", "operationId": "move", "tags": ["jobs"],
            "parameters": [USER, CALLBACK_HEADER, CALLBACK_QUERY],
            "requestBody": {"required": True, "content": {"application/json": {"schema": METADATA_DOCUMENT}}},
            "responses": {**_accepted("The job, as accepted."), **errors(400, 401, 403, 413, 503)}}},
        "/validate": {"post": {
            "summary": "Every problem a metadata document would meet, without creating a job",
            "operationId": "validate", "tags": ["jobs"], "parameters": [USER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [METADATA_DOCUMENT, {"type": "object", "properties": {
                    "metadata": METADATA_DOCUMENT, "files": {"type": "array", "items": {
                        "type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
                        "required": ["name", "size"]}}}}]}}}},
            "responses": {"200": json_response("It would be accepted.", "Validation"),
                          "422": json_response("It would be refused: every problem.", "Validation"),
                          **errors(400, 401, 413, 503)}}},
        "/quota": {"get": {
            "summary": "The caller's quotas: limits and usage of their user and of the projects and "
                       "instruments they archived files of", "operationId": "quota", "tags": ["jobs"],
            "parameters": [USER],
            "responses": {"200": json_response("Limits (null: none) and usage.", "Quotas"),
                          **errors(400, 401, 503)}}},
        "/uploads/": {
            "options": {"summary": "What the tus server supports", "operationId": "tusOptions", "tags": ["tus"],
                        "responses": {"204": {"description": "Tus-Version, Tus-Extension, Tus-Checksum-Algorithm "
                                                             "and Tus-Max-Size headers."}}},
            "post": {"summary": "Create a resumable upload (tus 1.0.0 creation)", "operationId": "tusCreate",
                     "tags": ["tus"],
                     "description": "Extensions: creation-with-upload (the first bytes as the body), "
                                    "creation-defer-length (Upload-Defer-Length: 1, the length with a "
                                    "later PATCH), concatenation (Upload-Concat: partial, then "
                                    "final;<partial URLs in order>, which creates the job).",
                     "parameters": [TUS_VERSION, USER, CALLBACK_HEADER, CALLBACK_QUERY,
                                    {"name": "Upload-Length", "in": "header", "required": False,
                                     "schema": {"type": "integer", "minimum": 1},
                                     "description": "Required unless deferred, or for a final upload."},
                                    {"name": "Upload-Defer-Length", "in": "header", "required": False,
                                     "schema": {"const": "1"}},
                                    {"name": "Upload-Concat", "in": "header", "required": False,
                                     "schema": {"type": "string"}, "description": "partial, or final;<urls>"},
                                    {"name": "Upload-Metadata", "in": "header", "required": False,
                                     "schema": {"type": "string"}}],
                     "requestBody": {"required": False, "content": OFFSET_BODY},
                     "responses": {"201": {"description": "Created; its URL is in Location, the bytes taken in "
                                                          "Upload-Offset.",
                                           "headers": {"Location": {"schema": {"type": "string"}}}},
                                   **errors(400, 401, 403, 404, 405, 409, 412, 413, 415, 429, 460, 503,
                                            507)}}},
        "/uploads/{upload_id}": {
            "parameters": [UPLOAD_ID],
            "head": {"summary": "How much of an upload arrived (Upload-Offset)", "operationId": "tusOffset",
                     "tags": ["tus"], "parameters": [TUS_VERSION],
                     "responses": {"200": {"description": "Upload-Offset and Upload-Length headers."},
                                   "400": {"description": "Malformed."}, "404": {"description": "No such upload."},
                                   "412": {"description": "Unsupported Tus-Resumable."}}},
            "patch": {"summary": "Append a chunk at Upload-Offset", "operationId": "tusAppend", "tags": ["tus"],
                      "parameters": [TUS_VERSION,
                                     {"name": "Upload-Offset", "in": "header", "required": True,
                                      "schema": JOB_ID_SCHEMA},
                                     {"name": "Upload-Checksum", "in": "header", "required": False,
                                      "schema": {"type": "string"}},
                                     {"name": "Upload-Length", "in": "header", "required": False,
                                      "schema": {"type": "integer", "minimum": 1},
                                      "description": "The length of an upload created with Upload-Defer-Length."}],
                      "requestBody": {"required": True, "content": OFFSET_BODY},
                      "responses": {"204": {"description": "Appended; the new Upload-Offset is in the header."},
                                    **errors(400, 404, 409, 412, 413, 415, 423, 460, 503, 507)}},
            "delete": {"summary": "End an unfinished upload (tus termination); its job fails",
                       "operationId": "tusTerminate", "tags": ["tus"], "parameters": [TUS_VERSION],
                       "responses": {"204": {"description": "Ended."}, **errors(400, 404, 412, 503)}}},
    }


@functools.cache
def openapi() -> dict[str, Any]:
    """The document."""
    return document("Pacifica Ingest", "1.0.0",
                    "Receives data bundles, validates them, streams every file into the archive with inline "
                    "checksum verification, and records the metadata.",
                    {**_paths(), **_jobs_page()}, {"JobState": JOB_STATE, "Event": EVENT, "Validation": VALIDATION,
                                                   "Quotas": QUOTAS})
