"""The composition root of cartd: settings in; database, Celery app and archive client out.

Nothing here runs at import; the server, the WSGI module, the CLI and the worker (lazily, on its
first task) call ``configure()``.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from ..core.database import bind
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
    _current = Runtime(settings, archive_for(settings.archive_url, settings.transfer_size, settings.embedded_archive))
    return _current


def runtime() -> Runtime:
    """The current runtime, configured from the environment on first use."""
    if _current is None:
        with _lock:
            if _current is None:
                configure()
    assert _current is not None
    return _current


def check_schema() -> None:
    """Make sure the database can be served (the server and the WSGI module alike), or raise a
    one-line ``ConfigError``: an empty database gets the whole schema, any other must be at a
    version this code can use."""
    from ..core.database import connect_blocking
    from ..core.schema import ensure_schema
    from . import migrations

    settings = runtime().settings
    connect_blocking(DB.obj, settings.connect_attempts, settings.connect_wait)
    ensure_schema(migrations.SCHEMA, DB.obj, migrations.TABLES, "pacifica-cartd-cmd")
