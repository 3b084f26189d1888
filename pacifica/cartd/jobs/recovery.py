"""Queue again the carts a stopped or killed embedded cartd left unfinished.

The database, not the broker, says which carts are unfinished: waiting, staging or bundling, and
not deleted. A cart whose message is still in the embedded queue resumes by itself; any other
lost its message with a killed worker and is queued again. ``build_cart`` keeps the files
already staged, so only the missing ones are fetched.
"""

from __future__ import annotations

import logging
import os

from ...core.queue import queued_task_args
from ..db.models import Cart, CartTasks
from .build import stage_files

logger = logging.getLogger(__name__)

UNFINISHED = ("waiting", "staging", "bundling")


def queued_cart_ids(folder: str) -> set[int]:
    """The ids of the carts that have a message waiting in ``folder``."""
    ids = set()
    for args in queued_task_args(folder):
        try:
            ids.add(int(args[1]))
        except (IndexError, TypeError, ValueError):
            continue
    return ids


def recover(data_dir: str) -> list[int]:
    """Queue again every unfinished cart that no queued message will resume; return their ids.

    Call it only while no worker consumes the queue (at start-up, before the embedded worker).
    """
    queued = queued_cart_ids(os.path.join(data_dir, "queue"))
    resumed = []
    carts = Cart.select().where(Cart.status.in_(UNFINISHED) & Cart.deleted_date.is_null())
    for cart in carts:
        if cart.id in queued:
            continue
        logger.warning("cart %s (%s): resuming after a restart", cart.cart_uid, cart.id)
        result = stage_files.delay([], cart.id)
        CartTasks.create(cart_id=cart.id, celery_task_id=str(result.id))
        resumed.append(cart.id)
    return resumed
