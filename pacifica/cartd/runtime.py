"""The composition root of cartd: settings in; database, Celery app and archive client out.

Nothing here runs at import; the server, the WSGI module, the CLI and the worker (lazily, on its
first task) call ``configure()``.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from ..ingest.database import bind
from .archive_requests import ArchiveRequests, archive_for
from .config import Settings, load_settings
from .orm import DB


@dataclasses.dataclass
class Runtime:
    """Everything a cartd process works with."""

    settings: Settings
    archive: ArchiveRequests


_current: Runtime | None = None
_lock = threading.Lock()


def configure(settings: Settings | None = None) -> Runtime:
    """Build the runtime from ``settings`` (default: ``load_settings()``) and make it current."""
    global _current
    from .tasks import configure_celery

    settings = settings or load_settings()
    os.makedirs(settings.volume_path, exist_ok=True)
    bind(DB, settings.peewee_url, settings.data_dir)
    configure_celery(settings)
    _current = Runtime(settings, archive_for(settings.archive_url, settings.transfer_size))
    return _current


def runtime() -> Runtime:
    """The current runtime, configured from the environment on first use."""
    if _current is None:
        with _lock:
            if _current is None:
                configure()
    assert _current is not None
    return _current
