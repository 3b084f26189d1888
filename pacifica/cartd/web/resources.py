"""The cart resource: ``POST``/``HEAD``/``GET``/``DELETE /<uid>`` (seed 004, chapter 3).

Every answer except a download is JSON, errors included; a traceback never reaches a client.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import cherrypy
from cherrypy.lib import httputil, static

from ...core import jsonbody, web
from ...core.auth.identity import Identity
from ...core.auth.web import current_identity, owner_filter
from ...core.database import release
from ...core.health import HealthResource, ReadyResource
from ...core.openapi import OpenApiResource
from ...core.redact import Problems, public_text, summarise
from ...core.web import error_page_default, unexpected_error  # noqa: F401 - published names
from ..common.metrics import SERVED_BYTES
from ..common.settings import archive_embedded
from ..db.models import DB, Cart, CartTasks, File
from ..jobs.build import stage_files
from ..jobs.celery_app import CART_APP
from ..jobs.runtime import Runtime
from ..peers.file_access import FileAccessUnknown, IngestFileOwners
from ..volume import progress
from ..volume.store import CartStore
from ..volume.tarlayout import TarLayout
from .openapi import openapi
from .ops import Metrics, readiness_checks

logger = logging.getLogger(__name__)

BODY_LIMIT = 64 * 1024 * 1024


class CartInterfaceError(Exception):
    """Basic exception class for this module (a published name; this service raises none)."""


def _runtime() -> Runtime:
    """The runtime of the application serving this request (set by ``make_app``)."""
    return cherrypy.request.app.runtime


def _store() -> CartStore:
    settings = _runtime().settings
    return CartStore(settings.volume_path, settings.lru_buffer_time, settings.lru_purge)


def bytes_type(unicode_obj: str) -> bytes:
    """Convert the unicode object into bytes."""
    return unicode_obj.encode("utf-8")


def _has_control(text: str) -> bool:
    """Whether ``text`` holds a NUL or another control character (never part of an id or a path)."""
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


SHAPE = 'the body must be {"fileids": [{"id", "path", "hashtype", "hashsum"}, ...]} with at least one file'


def item_problems(label: str, item: Any) -> list[str]:
    """Every problem of one file of a cart request (``label`` names it); a usable ``path`` is made
    relative and normal in place."""
    if not isinstance(item, dict):
        return [f"{label} must be an object"]
    problems = []
    if not isinstance(item.get("id"), (str, int)) or isinstance(item.get("id"), bool) or str(item["id"]) == "":
        problems.append(f"{label}: id must be the file's id in the archive")
    elif _has_control(str(item["id"])) or len(str(item["id"])) > 1024:
        problems.append(f"{label}: id must not hold control characters (NUL included) or exceed 1024 characters")
    path = item.get("path")
    if isinstance(path, str) and (_has_control(path) or len(path) > 4096):
        problems.append(f"{label}: path must not hold control characters (NUL included) or exceed 4096 characters")
    else:
        normal = posixpath.normpath(path.lstrip("/")) if isinstance(path, str) and path.strip("/") else None
        if normal is None or normal.startswith("..") or normal == ".":
            problems.append(f"{label}: path must be a relative file path inside the cart")
        else:
            item["path"] = normal
    hashtype = item.get("hashtype")
    if not isinstance(hashtype, str) or hashtype.lower() not in hashlib.algorithms_available:
        problems.append(f"{label}: hashtype must be a hashlib algorithm such as md5 or sha1")
    if not isinstance(item.get("hashsum"), str):
        problems.append(f"{label}: hashsum must be the file's hex digest (may be empty)")
    return problems


def file_problems(data: Any) -> list[str]:
    """Every problem of a whole cart request ``{"fileids": [{"id", "path", "hashtype", "hashsum"}]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("fileids"), list) or not data["fileids"]:
        return [SHAPE]
    problems = [] if isinstance(data.get("bundle", False), bool) else ["bundle must be true or false"]
    paths = set()
    for index, item in enumerate(data["fileids"]):
        found = item_problems(f"fileids[{index}]", item)
        if not found and item["path"] in paths:
            found = [f"fileids[{index}]: path {item['path']!r} is given twice"]
        paths.add(item.get("path") if isinstance(item, dict) else None)
        problems += found
    return problems


class _CheckedFiles:
    """The files of a cart request read one at a time: each valid one is passed on, each problem
    counted (``problems``), and, with ``collect_ids``, the ids kept for the access check."""

    def __init__(self, items: Iterator[Any], collect_ids: bool) -> None:
        self.items = items
        self.problems = Problems()
        self.ids: set[str] | None = set() if collect_ids else None
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, item in enumerate(self.items):
            self.count += 1
            found = item_problems(f"fileids[{index}]", item)
            if found:
                self.problems.extend(found)
                continue
            if self.ids is not None:
                self.ids.add(str(item["id"]))
            yield item


def _download_name(filename: Any, cart: Cart) -> str:
    """The name asked for, made safe, else ``data_YYYY_MM_DD_HH_MM_SS.tar`` from the cart's creation
    time (not the request's: the same download must have the same bytes for a resumed transfer to fit).

    The name is also the tar's top directory, so it is never ``.`` or ``..`` and holds no separator
    or control character."""
    if filename:
        name = str(filename).replace("\\", "/").rsplit("/", 1)[-1]
        name = "".join(char for char in name if not (ord(char) < 32 or ord(char) == 127) and char != '"')[:200]
        if name.strip(". "):
            return name
    return cart.creation_date.strftime("data_%Y_%m_%d_%H_%M_%S.tar")


def content_disposition(name: str) -> str:
    """``attachment`` with ``name`` per RFC 6266: an ASCII ``filename`` and, for any other name, the
    UTF-8 ``filename*`` (RFC 5987)."""
    fallback = name.encode("ascii", "replace").decode("ascii").replace("?", "_").replace("\\", "_")
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _header_text(text: str, limit: int = 1024) -> str:
    """``text`` as one line of ASCII for a response header (a client's own words come back in it)."""
    flat = " ".join(public_text(text or "", limit).split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:limit]


def _owner(identity: Identity) -> str | None:
    """The owner whose carts this request may reach (None: any)."""
    return owner_filter(identity, _runtime().auth)


class RangeNotSatisfiable(ValueError):
    """The byte range asked for starts past the end."""


def requested_range(size: int, etag: str, range_header: str | None, if_range: str | None) -> tuple[int, int] | None:
    """The one byte range (start, stop) of a ``size``-byte tar that ``range_header`` asks for, or
    None for the whole tar; ``RangeNotSatisfiable`` when it starts past the end.

    Several ranges, a malformed header, or an ``If-Range`` naming other bytes get the whole tar.
    """
    if if_range is not None and if_range.strip() != etag:
        return None
    if range_header is None or not range_header.strip().lower().startswith("bytes="):
        return None  # a unit other than bytes is ignored (RFC 9110 14.2); CherryPy would read it as bytes
    try:
        ranges = httputil.get_ranges(range_header, size)
    except ValueError:
        return None
    if ranges == []:
        raise RangeNotSatisfiable(f"the range asked for starts past the end of the {size}-byte tar")
    if not ranges or len(ranges) > 1:
        return None
    start, stop = ranges[0]
    return start, min(stop, size)


def _requested_range(size: int, etag: str) -> tuple[int, int] | None:
    """``requested_range`` of this request; 416 when it lies past the end."""
    headers = cherrypy.request.headers
    try:
        return requested_range(size, etag, headers.get("Range"), headers.get("If-Range"))
    except RangeNotSatisfiable as exc:
        cherrypy.response.headers["Content-Range"] = f"bytes */{size}"
        raise cherrypy.HTTPError(416, str(exc)) from None


def _serve_layout(layout: TarLayout, block_size: int):
    """Answer with the tar (or the range of it asked for), ``Content-Length`` set."""
    headers = cherrypy.response.headers
    headers["Accept-Ranges"] = "bytes"
    headers["ETag"] = layout.etag
    wanted = _requested_range(layout.size, layout.etag)
    start, stop = wanted or (0, layout.size)
    if wanted is not None:
        cherrypy.response.status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{layout.size}"
    headers["Content-Length"] = str(stop - start)
    return _closing_blocks(layout.read(start, stop, block_size))


def _closing_blocks(blocks):
    """Send ``blocks``; a file that changed under the download ends the connection, never a short tar
    that looks whole."""
    try:
        for block in blocks:
            SERVED_BYTES.labels("streamed").inc(len(block))
            yield block
    except OSError as exc:
        logger.error("cart download broken off: %s", exc)
        raise


def _release_connection() -> None:
    """After the answer is sent, the request thread's database connection goes back to the pool."""
    with contextlib.suppress(Exception):
        release(DB.obj)


cherrypy.tools.cartd_release_connection = cherrypy.Tool("on_end_request", _release_connection)


class CartRoot:
    """Define the methods that can be used for cart request types."""

    exposed = True
    _cp_config = {"response.stream": True, "request.process_request_body": False}
    # Mounted by make_app.
    metrics: Metrics
    health: HealthResource
    ready: ReadyResource
    openapi_json: OpenApiResource

    @staticmethod
    def GET(uid: Any = None, **kwargs: Any) -> Any:
        """Download the tar file created by the cart (202 while it is not ready)."""
        if uid is None:
            return bytes_type(json.dumps({"message": "Pacifica Cartd Interface Up and Running"}))
        owner = _owner(current_identity("read"))
        path = CartStore.available_cart(uid, owner)
        if path is None or (path and not os.path.exists(path)):
            raise cherrypy.HTTPError(404, "The cart does not exist or has already been deleted")
        cart = CartStore.current(uid, owner)
        if cart is None:
            raise cherrypy.HTTPError(404, "The cart does not exist or has already been deleted")
        if path is False:
            if cart.status == "error":
                # A polling client must learn that the cart failed, not wait for ever.
                raise cherrypy.HTTPError(424, f"the cart failed: {_header_text(cart.error, 4000)}")
            cherrypy.response.status = 202
            return bytes_type(json.dumps({"message": "The cart is not ready for download."}))
        name = _download_name(kwargs.get("filename"), cart)
        headers = cherrypy.response.headers
        if os.path.isfile(path):  # made with "bundle": the tar is on disk (Range and length by CherryPy)
            body = static.serve_file(path, "application/octet-stream")
            headers["Content-Disposition"] = content_disposition(name)
            SERVED_BYTES.labels("bundled").inc(int(headers.get("Content-Length") or 0))
            return body
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Disposition"] = content_disposition(name)
        layout = _store().layout(cart, name.removesuffix(".tar"))
        return _serve_layout(layout, _runtime().settings.transfer_size)

    @staticmethod
    def HEAD(uid: Any = None, **_kwargs: Any) -> bytes:
        """Get the status of a cart: ``X-Pacifica-Status`` and ``X-Pacifica-Message``."""
        # One query: what cart_status would answer, and the cart's id.
        cart = CartStore.current(uid, _owner(current_identity("read")))
        headers = cherrypy.response.headers
        if cart is None:
            message = _header_text(f"No cart with uid {uid} found")
            headers["X-Pacifica-Status"], headers["X-Pacifica-Message"] = "error", message
            raise cherrypy.HTTPError(404, message)
        headers["X-Pacifica-Status"], headers["X-Pacifica-Message"] = cart.status, _header_text(cart.error)
        counts = progress.read(_store().progress_path(cart))
        for field, value in (counts or {}).items():
            headers[progress.HEADERS[field]] = str(value)
        cherrypy.response.status = 204
        return b""

    @staticmethod
    def POST(uid: Any = None, **_kwargs: Any) -> bytes:
        """Create the cart ``uid``: stage its files, then bundle them."""
        identity = current_identity("read")
        if (not uid or str(uid) in (".", "..") or any(char in str(uid) for char in "/\\") or _has_control(str(uid))
                or len(str(uid)) > 255):
            raise cherrypy.HTTPError(400, "the cart's uid is the path: POST /<uid>, a name of at most 255 "
                                          "characters without / or \\ or control characters")
        if str(_kwargs.get("retry", "")).lower() in ("1", "true", "yes", "on"):
            return _retry(str(uid), _owner(identity))
        settings = _runtime().settings
        body, shape = web.spooled_json(BODY_LIMIT, "the cart request", settings.volume_path)
        with body:
            if shape.kind != "map" or shape.members.get("fileids") != "array":
                raise cherrypy.HTTPError(400, SHAPE)
            if shape.members.get("bundle") not in (None, "boolean"):
                raise cherrypy.HTTPError(400, "bundle must be true or false")
            bundle = next(jsonbody.items(body, "bundle")) if "bundle" in shape.members else settings.bundle_task
            # 'staging' at once, as the published service: its downloader stops waiting on any other
            # status. The file rows are made here, with the cart, one at a time as the request is
            # read: the worker reads them, and a cart whose message was lost (a killed embedded
            # worker) can be queued again from the database. A refused request leaves nothing.
            with Cart.atomic():
                cart = Cart.create(cart_uid=str(uid), status="staging", bundle=bundle, owner=identity.user)
                files = _CheckedFiles(jsonbody.items(body, "fileids.item"), _access_checked(identity))
                CartStore.update_cart_files(cart, files)
                problems = files.problems
                if not files.count:
                    problems.add(SHAPE)
                for path in CartStore.repeated_paths(cart):
                    problems.add(f"path {path!r} is given twice")
                if problems:
                    raise cherrypy.HTTPError(400, summarise(problems))
                if files.ids is not None:
                    _check_access(identity, files.ids)
        result = stage_files.delay([], cart.id)
        CartTasks.create(cart_id=cart.id, celery_task_id=str(result.id))
        cherrypy.response.status = 201
        return bytes_type(json.dumps({"message": "Cart Processing has begun"}))

    @staticmethod
    def DELETE(uid: Any = None, **_kwargs: Any) -> bytes:
        """Delete a cart that has been created."""
        message = _store().remove_cart(uid, CART_APP.control.revoke, _owner(current_identity("read")))
        if message is False:
            raise cherrypy.HTTPError(404, "Not Found")
        return bytes_type(json.dumps({"message": str(message)}))


def _access_checked(identity: Identity) -> bool:
    """Whether the files ``identity`` asks for must be theirs: in the embedded stack, once identities
    are configured, unless they are an operator."""
    return _owner(identity) is not None and archive_embedded(_runtime().settings)


def _check_access(identity: Identity, file_ids: set[str]) -> None:
    """404 unless ``identity`` may read every file asked for (embedded stack: the files of their own
    jobs). The answer does not tell a file of someone else's from a file that does not exist."""
    try:
        readable = IngestFileOwners(_runtime().settings.ingest_database).readable(identity.user, file_ids)
    except FileAccessUnknown:
        raise cherrypy.HTTPError(503, "cannot tell which files you may read now; try again shortly") from None
    missing = sorted(file_ids - readable)
    if missing:
        raise cherrypy.HTTPError(404, "no such files of yours in the archive: " + summarise(missing, ", "))


def _retry(uid: str, owner: str | None) -> bytes:
    """Fetch again the files of cart ``uid`` that failed, keeping those already staged."""
    cart = CartStore.current(uid, owner)
    if cart is None:
        raise cherrypy.HTTPError(404, f"No cart with uid {uid} found")
    if cart.status != "error":
        raise cherrypy.HTTPError(409, f"cart {uid} is {cart.status}: only a cart in error can be retried")
    with Cart.atomic():
        claimed = (Cart.update(status="waiting", error="", updated_date=datetime.datetime.now())
                   .where((Cart.id == cart.id) & (Cart.status == "error")).execute())
        File.update(status="waiting", error="").where((File.cart == cart.id) & (File.status != "staged")).execute()
    if not claimed:
        raise cherrypy.HTTPError(409, f"cart {uid} is already being retried")
    result = stage_files.delay([], cart.id)
    CartTasks.create(cart_id=cart.id, celery_task_id=str(result.id))
    cherrypy.response.status = 202
    return bytes_type(json.dumps({"message": "Cart retry has begun"}))


def app_config() -> dict[str, dict[str, Any]]:
    """The application config every deployment gets."""
    return web.app_config("cartd_release_connection")


def make_app(runtime: Runtime, cp_config: str | None = None) -> cherrypy.Application:
    """Build the CherryPy application serving ``runtime`` (its handlers reach it through their
    application)."""
    root = CartRoot()
    root.metrics, root.health, root.ready = Metrics(), HealthResource(), ReadyResource(readiness_checks)
    root.openapi_json = OpenApiResource(openapi)
    app = cherrypy.Application(root, "", config=app_config())
    app.runtime = runtime
    if cp_config:
        app.merge(cp_config)
    return app
