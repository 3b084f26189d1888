"""The WSGI entry point: ``uwsgi --http-socket :8066 --master --module pacifica.ingest.wsgi``.

Importing this module loads the settings (``INGEST_CONFIG``), refuses an unusable database
schema, and exposes ``application``: the same composition as ``pacifica-ingest``
(``server.compose``). ``s3_application`` is the S3 door, for a second uWSGI on its own port
(``--module pacifica.ingest.wsgi:s3_application``) over the same volume and database.

The duties (start-up recovery, the embedded worker with the default embedded broker, expiry of
failed bundles and idle uploads) start in each server process after uWSGI forks it, or with the
first request under another WSGI server; one process on the volume runs them. They stop with the
process.
"""

from __future__ import annotations

import os

import cherrypy

from ..core.logs import configure_logging
from ..core.wsgiapp import with_client_share, with_duties
from .app.bootstrap import check_schema, configure
from .app.server import compose
from .common import environment as ingest_globals
from .web.resources import SERVER_DEFAULTS
from .web.s3.door import make_s3_app

configure_logging()
_runtime = configure()
check_schema(_runtime.settings)
cherrypy.config.update({key: value for key, value in SERVER_DEFAULTS.items() if key.startswith("engine.")})
_cp_config = ingest_globals.cherrypy_config()
application = with_client_share(with_duties(compose(_runtime, _cp_config if os.path.exists(_cp_config) else None)),
                                _runtime.settings.trusted_proxies)
# The duties started for ``application`` (after the fork, under uWSGI) serve this one too.
s3_application = with_client_share(make_s3_app(_runtime), _runtime.settings.trusted_proxies)
