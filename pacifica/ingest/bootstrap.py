"""The composition root: settings in, configured database, Celery app, peers and spool out.

The server, the WSGI module, the CLI and the worker all go through ``configure()`` (the worker
lazily, on its first task, via ``runtime()``). Nothing here runs at import.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

from ..core.database import bind
from . import migrations
from .config import Settings, load_settings
from .orm import DB
from .peers import Peers, build_peers
from .spool import Spool

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    """Everything a process of the service works with, built from one ``Settings``."""

    settings: Settings
    peers: Peers
    spool: Spool


_current: Runtime | None = None
_lock = threading.Lock()


def configure(settings: Settings | None = None, peers: Peers | None = None) -> Runtime:
    """Build the runtime from ``settings`` (default: ``load_settings()``) and make it current."""
    global _current
    from .tasks import configure_celery  # tasks imports this module

    settings = settings or load_settings()
    os.makedirs(settings.volume_path, exist_ok=True)
    bind(DB, settings.peewee_url, settings.data_dir)
    configure_celery(settings)
    current = Runtime(settings=settings, peers=peers or build_peers(settings),
                      spool=Spool(settings.volume_path, settings.transfer_size))
    _current = current
    from .callbacks import schedule
    from .orm import COMPLETION_HOOKS

    if schedule not in COMPLETION_HOOKS:
        COMPLETION_HOOKS.append(schedule)
    return current


def runtime() -> Runtime:
    """Return the current runtime, configuring it from the environment on first use."""
    if _current is None:
        with _lock:
            if _current is None:
                configure()
    assert _current is not None
    return _current


# Tables that only the embedded peers use arrived in schema 2.1.
EMBEDDED_TABLES_VERSION = (2, 1)
# The job history and progress columns every configuration uses arrived in schema 2.2.
HISTORY_VERSION = (2, 2)


def check_schema() -> None:
    """Make sure the database can be served, or raise a one-line ``ConfigError``.

    An empty database gets the whole schema (a first start needs no ``dbsync``); a database
    holding anything must already be at a version this code can use.
    """
    from ..core.database import connect_blocking
    from ..core.schema import ensure_schema

    settings = runtime().settings
    connect_blocking(DB.obj, settings.connect_attempts, settings.connect_wait)
    needed = max(HISTORY_VERSION, EMBEDDED_TABLES_VERSION) if uses_embedded_tables(settings) else HISTORY_VERSION
    ensure_schema(migrations.SCHEMA, DB.obj, migrations.TABLES, "pacifica-ingest-cmd", needed)


def uses_embedded_tables(settings: Settings) -> bool:
    """True when the embedded uniqueid or metadata peer keeps its data in our database."""
    from .config import EMBEDDED

    return EMBEDDED in (settings.uniqueid_url, settings.metadata_url)


def announce(settings: Settings) -> None:
    """Log, once at start-up, what this process runs on and anything an operator must know."""
    from .config import EMBEDDED
    from .peers.policy import EmbeddedPolicy

    logger.info("data directory %s; volume %s", settings.data_dir, settings.volume_path)
    if settings.policy_url == EMBEDDED:
        logger.warning(EmbeddedPolicy.WARNING)
    if not settings.trusted_proxies:
        logger.warning("[ingest] trusted_proxies is not set: the %s header is believed from any client "
                       "(set it to the address of the authenticating proxy)", settings.auth_header)
    if not settings.move_roots:
        logger.warning("[ingest] move_roots is not set: POST /move may move any file this service's "
                       "archive can read into the archive")
