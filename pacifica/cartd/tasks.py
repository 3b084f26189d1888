"""The cart's Celery task: stage every file on the archive, wait until it is on disk, pull it
(checking its hash while writing), then bundle. Run workers with
``celery -A pacifica.cartd.tasks worker``."""

from __future__ import annotations

import datetime
import json
import logging
import os
import tarfile
import time
from typing import Any

from celery import Celery

from ..ingest.errors import IngestError, PeerError
from .config import Settings, load_settings
from .orm import DB, Cart, File
from .utils import Cartutils

logger = logging.getLogger(__name__)

# How long a file may take to come back from tape to the archive's disk.
STAGE_TIMEOUT = 3600.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings derived from ``settings``."""
    return {"broker_url": settings.broker_url, "result_backend": settings.backend_url,
            "task_serializer": "json", "result_serializer": "json", "accept_content": ["json"],
            "task_acks_late": True, "worker_prefetch_multiplier": 1, "broker_connection_retry_on_startup": True}


CART_APP = Celery("cartd", set_as_current=False)
CART_APP.add_defaults(lambda: celery_config(load_settings()))
app = CART_APP


def configure_celery(settings: Settings) -> None:
    """Point the Celery app at the broker and backend of ``settings``."""
    CART_APP.conf.update(celery_config(settings))


class CartError(IngestError):
    """A cart cannot be made (no space, a file never reached the disk)."""


def _set_cart(cart: Cart, status: str, error: str = "", **fields: Any) -> None:
    fields.update(status=status, error=error, updated_date=datetime.datetime.now())
    Cart.update(**fields).where(Cart.id == cart.id).execute()


def _wait_on_disk(archive, file_name: str) -> dict[str, Any]:
    """Poll the archive until the file is on its disk; return the last status."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    pause = 0.1
    while True:
        status = json.loads(archive.status_file(file_name))
        if str(status.get("file_storage_media") or "disk").lower() == "disk":
            return status
        if time.monotonic() > deadline:
            raise CartError(f"file {file_name} was not staged to disk within {STAGE_TIMEOUT:g} s")
        time.sleep(pause)
        pause = min(5.0, pause * 2)


def _bundle(directory: str, target: str) -> None:
    """Write the cart's files as one tar at ``target``."""
    with tarfile.open(target + ".part", "w") as tar:
        tar.add(directory, arcname=os.path.basename(directory))
    os.replace(target + ".part", target)


def build_cart(file_ids: list[dict[str, Any]], cart_id: int) -> None:
    """Stage, pull and (if asked) bundle the files of cart ``cart_id``; record how it went."""
    from .runtime import runtime

    rt = runtime()
    cart = Cart.get_by_id(cart_id)
    utils = Cartutils(rt.settings.volume_path, rt.settings.lru_buffer_time)
    directory = utils.cart_directory(cart)
    files = [File.create(cart=cart, file_name=str(item["id"]), bundle_path=os.path.join(directory, item["path"]),
                         hash_type=item["hashtype"], hash_value=item["hashsum"], status="waiting")
             for item in file_ids]
    _set_cart(cart, "staging")
    current: File | None = None
    try:
        for current in files:
            rt.archive.stage_file(current.file_name)
            Cartutils.set_file_status(current, "staging")
            status = _wait_on_disk(rt.archive, current.file_name)
            if not utils.check_space_requirements(cart, int(status.get("filesize") or 0)):
                raise CartError("No Space Available")
            os.makedirs(os.path.dirname(current.bundle_path), exist_ok=True)
            rt.archive.pull_file(current.file_name, current.bundle_path, current.hash_value, current.hash_type)
            Cartutils.set_file_status(current, "staged")
        current = None
        path = directory
        if cart.bundle:  # otherwise the tar is made while it is downloaded
            _set_cart(cart, "bundling")
            path = directory + ".tar"
            _bundle(directory, path)
        _set_cart(cart, "ready", bundle_path=path)
        logger.info("cart %s (%s) ready: %d files", cart.cart_uid, cart.id, len(files))
    except (PeerError, IngestError, OSError) as exc:
        message = str(exc) if isinstance(exc, IngestError) else f"{exc.__class__.__name__}: {exc}"
        if current is not None:
            Cartutils.set_file_status(current, "error", message)
        _set_cart(cart, "error", message)
        logger.warning("cart %s (%s) failed: %s", cart.cart_uid, cart.id, message)


@CART_APP.task(name="pacifica.cartd.tasks.stage_files")
def stage_files(file_ids: list[dict[str, Any]], cart_id: int) -> None:
    """Get all the files of a cart locally and bundled."""
    from .runtime import runtime

    runtime()
    with DB.connection_context():
        build_cart(file_ids, cart_id)
