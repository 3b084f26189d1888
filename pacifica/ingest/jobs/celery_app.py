"""The ingest Celery app, its settings, and the base every ingest task runs on.

The app reads its broker and backend from the settings when it is first used, not at import
(``configure_celery`` sets them from the runtime's settings). ``celery -A pacifica.ingest.tasks``
is the worker's entry point; ``tasks`` imports this module.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.exceptions import Retry
from celery.signals import after_setup_logger

from ...core import queue
from ...core.celeryapp import ServiceCelery, ServiceTask
from ...core.logs import formatter
from ..common.errors import PeerUnavailable
from ..common.settings import EMBEDDED, Settings, load_settings
from ..db import models
from . import record


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery settings derived from ``settings``.

    ``embedded:`` as the broker queues messages as files in ``{data_dir}/queue``; as the result
    backend it keeps no results (the job's state lives in the database either way).
    """
    embedded: dict[str, Any] = {}
    broker = settings.broker_url
    if settings.broker_embedded:
        broker = f"{queue.TRANSPORT}://localhost//"
        embedded = {
            "broker_transport_options": queue.transport_options(settings.data_path("queue")),
            "worker_enable_remote_control": False,
            "worker_send_task_events": False,
        }
    elif settings.broker_url.split(":", 1)[0] in ("amqp", "pyamqp", "amqps"):
        # Wait for RabbitMQ to confirm each message: without it, a publish on a connection that
        # died silently "succeeds", and the job would wait in UPLOADING for ever.
        embedded = {"broker_transport_options": {"confirm_publish": True}}
    backend = None if settings.backend_url == EMBEDDED else settings.backend_url
    return {
        **embedded,
        "broker_url": broker,
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Stages are idempotent: a message is acknowledged only once its stage has finished,
        # so a worker that dies mid-stage leaves the message to be delivered again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # A client waiting on POST /upload learns within seconds that the broker is down.
        "broker_connection_timeout": 3,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                                      "interval_max": 1},
        "result_expires": 24 * 3600,
        # Keep each stage's arguments with its result, so an operator can find a job's tasks.
        "result_extended": True,
    }


INGEST_APP = ServiceCelery("ingest")


@after_setup_logger.connect
def _log_format(logger: logging.Logger, **_kwargs: Any) -> None:
    """A worker logs as the settings say (``log_format = json``: JSON lines), Celery's own records too."""
    if load_settings().log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(formatter("json"))


INGEST_APP.add_defaults(lambda: celery_config(load_settings()))
app = INGEST_APP


def configure_celery(settings: Settings) -> None:
    """Point the Celery app at the broker and backend of ``settings``."""
    INGEST_APP.conf.update(celery_config(settings))


class IngestTask(ServiceTask):
    """Base of every ingest task: its runtime is the ingest ``Runtime``, its database ``models.DB``."""

    database = models.DB



class StageTask(IngestTask):
    """Base of the stage tasks: retries a stage whose peer was unavailable, with exponential
    backoff and jitter, up to ``stage_retries`` times (a refusal or a bad bundle fails at once)."""

    # The bound is ``stage_retries`` (see final_attempt), not Celery's own default of 3.
    max_retries = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.runtime  # noqa: B018 - build the runtime (and bind the database) before connecting
        with models.DB.connection_context():
            try:
                return Task.__call__(self, *args, **kwargs)
            except PeerUnavailable as exc:
                if self.final_attempt:
                    raise
                try:
                    raise self.retry(exc=exc, countdown=self.backoff()) from None
                except Retry:
                    raise
                except Exception as scheduling:
                    # The stage said it would be retried; since it cannot be, the job fails here.
                    record.fail_unscheduled_retry(args[0]["job_id"], exc, scheduling)
                    raise

    @property
    def final_attempt(self) -> bool:
        """True when a transient failure must fail the job (retries used up, or run in-process)."""
        return bool(self.request.called_directly) or self.request.retries >= self.runtime.settings.stage_retries

    def backoff(self) -> float:
        """Seconds before the next attempt: ``retry_delay`` doubled each time, with jitter."""
        base = self.runtime.settings.retry_delay * (2 ** self.request.retries)
        return base * random.uniform(0.5, 1.0)
