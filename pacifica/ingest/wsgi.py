"""The WSGI entry point: ``uwsgi --http-socket :8066 --module pacifica.ingest.wsgi``.

Importing this module is starting the service: it loads the settings (``INGEST_CONFIG``),
refuses an unusable database schema, and exposes ``application``.
"""

from __future__ import annotations

import os

import cherrypy

from . import globals as ingest_globals
from .bootstrap import check_schema, configure, configure_logging
from .rest import SERVER_DEFAULTS, make_app

configure_logging()
configure()
check_schema()
cherrypy.config.update({key: value for key, value in SERVER_DEFAULTS.items() if key.startswith("engine.")})
_cp_config = ingest_globals.cherrypy_config()
application = make_app(_cp_config if os.path.exists(_cp_config) else None)
