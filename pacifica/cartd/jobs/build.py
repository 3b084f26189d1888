"""Making a cart: stage every file on the archive, wait until it is on disk, pull it (checking
its hash while writing), then bundle; and the Celery task that does it (``stage_files``)."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from ...core.errors import PeerError, ServiceError
from ..common.metrics import STAGED_BYTES, STAGED_FILES
from ..db.models import Cart, File
from ..peers.archive import HashMismatch
from ..peers.base import CartArchivePort
from ..peers.fixity_report import IngestFixityReport
from ..volume import progress
from ..volume.store import CartStore
from .celery_app import CART_APP, CartTask
from .runtime import Runtime

logger = logging.getLogger(__name__)

# How long a file may take to come back from tape to the archive's disk.
STAGE_TIMEOUT = 3600.0


class CartError(ServiceError):
    """A cart cannot be made (no space, a file never reached the disk)."""


class CartDeleted(Exception):
    """The cart was deleted while it was being made: stop, keep nothing."""


def _set_cart(cart: Cart, status: str, error: str = "", **fields: Any) -> None:
    fields.update(status=status, error=error, updated_date=datetime.datetime.now())
    Cart.update(**fields).where(Cart.id == cart.id).execute()


def _deletion_check(cart: Cart) -> Callable[[], None]:
    def check() -> None:
        deleted = Cart.select(Cart.deleted_date).where(Cart.id == cart.id).scalar()
        if deleted is not None:
            raise CartDeleted(cart.cart_uid)
    return check


def _wait_on_disk(archive: CartArchivePort, file_name: str, check: Callable[[], None]) -> dict[str, Any]:
    """Poll the archive until the file is on its disk (tape recalls take a while); return its status."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    pause = 0.1
    while True:
        status = archive.status(file_name)
        if str(status.get("file_storage_media") or "disk").lower() == "disk":
            return status
        if time.monotonic() > deadline:
            raise CartError(f"file {file_name} was not staged to disk within {STAGE_TIMEOUT:g} s")
        check()
        time.sleep(pause)
        pause = min(5.0, pause * 2)


def _archive_mtime(status: dict[str, Any]) -> float | None:
    """The file's modification time in the archive: seconds (the archive interface) or an HTTP date."""
    value = status.get("mtime")
    if value is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return parsedate_to_datetime(str(value)).timestamp()
    return None


def _cart_files(utils: CartStore, cart: Cart, file_ids: list[dict[str, Any]]) -> list[File]:
    """The cart's file rows: those made by an earlier run of this task (a retry, or a worker that
    died), else new ones from the request."""
    query = File.select().where(File.cart == cart.id).order_by(File.id)
    if not query.exists():
        error = utils.update_cart_files(cart, file_ids)
        if error is not None:
            raise CartError(f"the cart's file list is incomplete: {error!r}")
    return list(query)


def _failure(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ServiceError) else f"{exc.__class__.__name__}: {exc}"


def _on_disk(status: dict[str, Any]) -> bool:
    return str(status.get("file_storage_media") or "disk").lower() == "disk"


def _stage_and_pull(rt: Runtime, utils: CartStore, cart: Cart, files: list[File],
                    tracker: progress.Tracker) -> list[str]:
    """Stage and pull every file not yet staged; return the failures (each names its file).

    The first status of each file (HEAD) gives its size and where it is. Files on tape are all
    asked for (POST) before any is pulled, so the library recalls them together, and each is
    polled until it is on disk; a file already on disk is pulled at once, on that first status.
    The deletion check and the progress file are written every ``tracker.interval``, not per file.
    """
    check = tracker.check or (lambda: None)
    pending, sizes, statuses, failures = [], {}, {}, []

    def is_staged(cart_file: File) -> bool:
        return cart_file.status == "staged" and os.path.isfile(utils.file_path(cart, cart_file))

    done = {cart_file.id for cart_file in files if is_staged(cart_file)}
    for cart_file in files:
        if cart_file.id in done:
            sizes[cart_file.id] = os.path.getsize(utils.file_path(cart, cart_file))
            continue
        try:
            statuses[cart_file.id] = rt.archive.status(cart_file.file_name)
            sizes[cart_file.id] = int(statuses[cart_file.id].get("filesize") or 0)
            pending.append(cart_file)
        except PeerError as exc:
            CartStore.set_file_status(cart_file, None, "error", _failure(exc))
            failures.append(_failure(exc))
    tracker.set(bytes_total=sum(sizes.values()), files_total=len(files), files_staged=len(done),
                bytes_staged=sum(sizes[file_id] for file_id in done))
    if not utils.make_room(cart, sum(sizes[cart_file.id] for cart_file in pending)):
        raise CartError("No Space Available")
    on_tape = [cart_file for cart_file in pending if not _on_disk(statuses[cart_file.id])]
    for cart_file in on_tape:  # ask for everything first: the archive can recall from tape meanwhile
        rt.archive.stage_file(cart_file.file_name)
        CartStore.set_file_status(cart_file, None, "staging")
    recalled = {cart_file.id for cart_file in on_tape}
    for cart_file in pending:
        tracker.tick()
        before = tracker.counts["bytes_staged"]
        try:
            status = statuses[cart_file.id]
            if cart_file.id in recalled:
                tracker.flush()  # what is staged so far shows while this file comes back from tape
                status = _wait_on_disk(rt.archive, cart_file.file_name, check)
            target = utils.file_path(cart, cart_file)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            # Every cart request names both (the columns may be empty only in rows of other versions).
            digest = rt.archive.pull_file(cart_file.file_name, target, cart_file.hash_value or "",
                                          cart_file.hash_type or "sha1", progress=tracker.add_bytes)
            mtime = _archive_mtime(status)
            if mtime is not None:
                os.utime(target, (mtime, mtime))
            File.update(status="staged", error="", hash_value=digest).where(File.id == cart_file.id).execute()
            tracker.counts["files_staged"] += 1
            media = "tape" if cart_file.id in recalled else "disk"
            STAGED_BYTES.labels(media).inc(tracker.counts["bytes_staged"] - before)
            STAGED_FILES.labels(media).inc()
        except (PeerError, ServiceError, OSError, ValueError) as exc:
            CartStore.set_file_status(cart_file, None, "error", _failure(exc))
            failures.append(_failure(exc))
            tracker.counts["bytes_staged"] = before
            if isinstance(exc, HashMismatch):
                IngestFixityReport(rt.settings.ingest_database).failed(exc.file_name, exc.hashtype, exc.expected,
                                                                       exc.actual, str(exc))
    tracker.flush()
    return failures


def build_cart(rt: Runtime, file_ids: list[dict[str, Any]], cart_id: int) -> str | None:
    """Stage, pull and (if asked) bundle the files of cart ``cart_id``; record how it went, and
    return the cart's error (None when it is ready or was deleted meanwhile).

    Files already staged by an earlier run are kept, so a retry or a redelivered task (its worker
    died) fetches only what is missing. Each file keeps its own status and error; the cart is in
    error if any file failed, with a message naming them.
    """
    cart = Cart.get_by_id(cart_id)
    started = time.monotonic()
    if cart.deleted_date is not None:
        return None
    utils = CartStore(rt.settings.volume_path, rt.settings.lru_buffer_time, rt.settings.lru_purge)
    check = _deletion_check(cart)
    tracker = progress.Tracker(utils.progress_path(cart), check=check)
    try:
        files = _cart_files(utils, cart, file_ids)
        _set_cart(cart, "staging")
        failures = _stage_and_pull(rt, utils, cart, files, tracker)
        if failures:
            head = f"{len(failures)} of {len(files)} files failed: " if len(files) > 1 else ""
            raise CartError(head + "; ".join(failures))
        if cart.bundle:  # otherwise the tar is made while it is downloaded
            _set_cart(cart, "bundling")
        check()
        utils.tar_files(cart.id)
        duration = round(time.monotonic() - started, 6)
        logger.info("cart %s (%s) ready: %d files in %.3f s", cart.cart_uid, cart.id, len(files), duration,
                    extra={"cart_id": cart.id, "duration": duration})
    except CartDeleted:
        logger.info("cart %s (%s) was deleted while it was being made", cart.cart_uid, cart.id,
                    extra={"cart_id": cart.id})
        utils.delete_cart_bundle(cart)
    except (PeerError, ServiceError, OSError) as exc:
        message = _failure(exc)
        _set_cart(cart, "error", message)
        logger.warning("cart %s (%s) failed: %s", cart.cart_uid, cart.id, message,
                       extra={"cart_id": cart.id, "duration": round(time.monotonic() - started, 6)})
        return message
    except Exception:  # whatever went wrong, the cart must end in error, never stay in staging
        logger.exception("cart %s (%s) failed unexpectedly", cart.cart_uid, cart.id, extra={"cart_id": cart.id})
        message = "the cart could not be made (an internal error; the server log has the details)"
        _set_cart(cart, "error", message)
        return message
    return None


@CART_APP.task(name="pacifica.cartd.tasks.stage_files", base=CartTask, bind=True)
def stage_files(self: CartTask, file_ids: list[dict[str, Any]], cart_id: int) -> None:
    """Get all the files of a cart locally and bundled."""
    error = build_cart(self.runtime, file_ids, cart_id)
    if error is not None:
        # The cart row holds the error of each file; Celery (and its monitoring) sees the failure.
        raise CartError(f"cart {cart_id}: {error}")
