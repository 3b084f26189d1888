"""The Celery entry point of cartd: ``celery -A pacifica.cartd.tasks worker``.

Importing this module registers the cart task (``staging.stage_files``, under its published
name ``pacifica.cartd.tasks.stage_files``) and tells the app how a worker builds its runtime
(``bootstrap``).
"""

from __future__ import annotations

from typing import Any

from .app.bootstrap import runtime
from .jobs.build import STAGE_TIMEOUT, CartDeleted, CartError, stage_files
from .jobs.build import build_cart as build_cart_with
from .jobs.celery_app import CART_APP, CartTask, app, celery_config, configure_celery

__all__ = ["CART_APP", "STAGE_TIMEOUT", "CartDeleted", "CartError", "CartTask", "app", "build_cart",
           "celery_config", "configure_celery", "stage_files"]


def build_cart(file_ids: list[dict[str, Any]], cart_id: int) -> str | None:
    """Make cart ``cart_id`` in this process (see ``staging.build_cart``); return its error or None."""
    return build_cart_with(runtime(), file_ids, cart_id)
