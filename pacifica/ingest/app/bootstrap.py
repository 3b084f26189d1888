"""The composition root: settings in, configured database, Celery app, peers and spool out.

The server, the WSGI module and the CLI call ``configure()``; a worker calls it on its first
task (the Celery app holds the factory). Nothing the root builds imports it: web handlers get
the runtime from their CherryPy application, tasks from their app. ``runtime()`` is left for
the published faces (``config``, ``orm``, ``utils``, ``published``) only. Nothing here runs at
import.
"""

from __future__ import annotations

import logging
import os

from ...core.auth.identity import Authenticator
from ...core.auth.identity import build_authenticator as authenticator_from
from ...core.auth.tokens import TokenStore
from ...core.database import bind, connect_blocking
from ...core.logs import use_format
from ...core.metrics import use_directory
from ...core.redact import hide_paths
from ...core.schema import ensure_schema
from ..common.settings import EMBEDDED, Settings, load_settings
from ..db import migrations
from ..db.models import COMPLETION_HOOKS, DB, IngestToken
from ..db.quotas import release_when_ended
from ..jobs.callbacks import schedule
from ..jobs.celery_app import INGEST_APP, configure_celery
from ..jobs.runtime import Runtime
from ..peers import Peers, build_peers
from ..peers.policy import EmbeddedPolicy
from ..volume.resumable import TusStore
from ..volume.spool import Spool

logger = logging.getLogger(__name__)


def configure(settings: Settings | None = None, peers: Peers | None = None) -> Runtime:
    """Build the runtime from ``settings`` (default: ``load_settings()``) and give it to the app."""
    settings = settings or load_settings()
    os.makedirs(settings.volume_path, exist_ok=True)
    use_format(settings.log_format)
    hide_paths((settings.volume_path, "<volume>"), (settings.data_dir, "<data_dir>"))
    bind(DB, settings.peewee_url, settings.data_dir)
    use_directory(settings.data_path("metrics"))
    configure_celery(settings)
    spool = Spool(settings.volume_path, settings.transfer_size)
    current = Runtime(settings=settings, peers=peers or build_peers(settings), spool=spool,
                      uploads=TusStore(spool, settings.upload_expiry), auth=build_authenticator(settings))
    INGEST_APP.use(current)
    for hook in (schedule, release_when_ended):
        if hook not in COMPLETION_HOOKS:
            COMPLETION_HOOKS.append(hook)
    return current


INGEST_APP.provide(configure)


def build_authenticator(settings: Settings) -> Authenticator:
    """Who may do what: the identity settings and the token table of this service's database."""
    return authenticator_from(settings, "ingest", "pacifica-ingest-cmd", TokenStore(IngestToken))


def runtime() -> Runtime:
    """The runtime of this process, configured from the environment on first use (for the
    published faces, which have no other way to reach it)."""
    return INGEST_APP.runtime()


# Tables that only the embedded peers use arrived in schema 2.1.
EMBEDDED_TABLES_VERSION = (2, 1)
# The job history and progress columns every configuration uses arrived in schema 2.2, the
# submitter of each job in 2.3, the API tokens in 2.4, the record of archived files and their
# fixity checks in 2.5, the S3 door's access keys in 2.6.
HISTORY_VERSION = (2, 6)


def check_schema(settings: Settings) -> None:
    """Make sure the database can be served, or raise a one-line ``ConfigError``.

    An empty database gets the whole schema (a first start needs no ``dbsync``); a database
    holding anything must already be at a version this code can use.
    """
    connect_blocking(DB.obj, settings.connect_attempts, settings.connect_wait)
    needed = max(HISTORY_VERSION, EMBEDDED_TABLES_VERSION) if uses_embedded_tables(settings) else HISTORY_VERSION
    ensure_schema(migrations.SCHEMA, DB.obj, migrations.TABLES, "pacifica-ingest-cmd", needed)


def uses_embedded_tables(settings: Settings) -> bool:
    """True when the embedded uniqueid or metadata peer keeps its data in our database."""
    return EMBEDDED in (settings.uniqueid_url, settings.metadata_url)


def announce(settings: Settings) -> None:
    """Log, once at start-up, what this process runs on and anything an operator must know."""
    logger.info("configuration %s (environment variables override it); data directory %s; volume %s",
                settings.config_file or "file: none, the built-in defaults", settings.data_dir, settings.volume_path)
    if settings.policy_url == EMBEDDED:
        logger.warning(EmbeddedPolicy.WARNING)
    if settings.allow_anonymous:
        logger.warning("[ingest] allow_anonymous is on: any client that reaches the port may upload as %s%s",
                       settings.default_user or "(nobody: default_user is empty)",
                       "" if settings.trusted_proxies else f" or as any user it names in {settings.auth_header}")
    if not settings.move_roots:
        logger.warning("[ingest] move_roots is not set: POST /move is refused (403)")
