"""The cartd Celery app, its settings, and the base the cart task runs on.

The app reads its broker and backend from the settings when it is first used, not at import.
``celery -A pacifica.cartd.tasks`` is the worker's entry point; ``tasks`` imports this module.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import after_setup_logger

from ...core import queue
from ...core.celeryapp import ServiceCelery, ServiceTask
from ...core.logs import formatter
from ..common.settings import EMBEDDED, Settings, broker_embedded, load_settings
from ..db.models import DB


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings derived from ``settings``.

    ``embedded:`` as the broker queues carts as files in ``{data_dir}/queue`` (``core.queue``);
    as the result backend it keeps no results.
    """
    config: dict[str, Any] = {"broker_url": settings.broker_url}
    if broker_embedded(settings):
        config = {"broker_url": f"{queue.TRANSPORT}://localhost//",
                  "broker_transport_options": queue.transport_options(os.path.join(settings.data_dir, "queue"))}
    backend = None if settings.backend_url.strip().rstrip("/") == EMBEDDED else settings.backend_url
    return {**config, "result_backend": backend, "task_ignore_result": backend is None,
            "task_default_queue": settings.queue,
            "task_serializer": "json", "result_serializer": "json", "accept_content": ["json"],
            "task_acks_late": True, "worker_prefetch_multiplier": 1, "broker_connection_retry_on_startup": True}


CART_APP = ServiceCelery("cartd")


@after_setup_logger.connect
def _log_format(logger: logging.Logger, **_kwargs: Any) -> None:
    """A worker logs as the settings say (``log_format = json``: JSON lines), Celery's own records too."""
    if load_settings().log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(formatter("json"))

CART_APP.add_defaults(lambda: celery_config(load_settings()))
app = CART_APP


def configure_celery(settings: Settings) -> None:
    """Point the Celery app at the broker and backend of ``settings``."""
    CART_APP.conf.update(celery_config(settings))


class CartTask(ServiceTask):
    """Base of the cart tasks: its runtime is the cartd ``Runtime``, its database ``models.DB``."""

    database = DB

