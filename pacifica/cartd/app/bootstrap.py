"""The composition root of cartd: settings in; database, Celery app and archive client out.

The server, the WSGI module and the CLI call ``configure()``; a worker calls it on its first
task (the Celery app holds the factory). Nothing the root builds imports it: web handlers get
the runtime from their CherryPy application, the cart task from its app. ``runtime()`` is left
for the published faces (``utils.Cartutils``, ``tasks.build_cart``). Nothing here runs at import.
"""

from __future__ import annotations

import os

from ...core.auth.identity import Authenticator
from ...core.auth.identity import build_authenticator as authenticator_from
from ...core.auth.tokens import TokenStore
from ...core.database import bind, connect_blocking
from ...core.logs import use_format
from ...core.metrics import use_directory
from ...core.redact import hide_paths
from ...core.schema import ensure_schema
from ..common.settings import Settings, load_settings
from ..db import migrations
from ..db.models import DB, CartToken
from ..jobs.celery_app import CART_APP, configure_celery
from ..jobs.runtime import Runtime
from ..peers.archive import archive_for


def configure(settings: Settings | None = None) -> Runtime:
    """Build the runtime from ``settings`` (default: ``load_settings()``) and give it to the app."""
    settings = settings or load_settings()
    os.makedirs(settings.volume_path, exist_ok=True)
    use_format(settings.log_format)
    bind(DB, settings.peewee_url, settings.data_dir)
    use_directory(os.path.join(settings.data_dir, "metrics"))
    configure_celery(settings)
    hide_paths((settings.volume_path, "<volume>"), (settings.data_dir, "<data_dir>"),
               (settings.embedded_archive, "<archive>"))
    current = Runtime(settings, archive_for(settings.archive_url, settings.transfer_size, settings.embedded_archive),
                      auth=build_authenticator(settings))
    CART_APP.use(current)
    return current


CART_APP.provide(configure)


def build_authenticator(settings: Settings) -> Authenticator:
    """Who may do what: the identity settings and the token table of this service's database."""
    return authenticator_from(settings, "cartd", "pacifica-cartd-cmd", TokenStore(CartToken))


def runtime() -> Runtime:
    """The runtime of this process, configured from the environment on first use (for the
    published faces, which have no other way to reach it)."""
    return CART_APP.runtime()


def check_schema(settings: Settings) -> None:
    """Make sure the database can be served (the server and the WSGI module alike), or raise a
    one-line ``ConfigError``: an empty database gets the whole schema, any other must be at a
    version this code can use."""
    connect_blocking(DB.obj, settings.connect_attempts, settings.connect_wait)
    ensure_schema(migrations.SCHEMA, DB.obj, migrations.TABLES, "pacifica-cartd-cmd")
