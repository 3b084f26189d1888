"""Run the Cart Server under a WSGI server: ``uwsgi --http-socket :8081 --master --module pacifica.cartd.wsgi``.

Importing this module loads the settings (``CARTD_CONFIG``), creates the schema in an empty
database or refuses one this code cannot use, and exposes ``application``: the same composition
as ``pacifica-cartd`` (``server.compose``), whose duties (recovery, the embedded worker) start in
each server process after uWSGI forks it, or with the first request elsewhere.
"""

from __future__ import annotations

import os

import cherrypy

from ..core.logs import configure_logging
from ..core.wsgiapp import with_client_share, with_duties
from .app.bootstrap import check_schema, configure
from .app.server import compose
from .common import environment as cartd_globals

configure_logging()
_runtime = configure()
check_schema(_runtime.settings)
cherrypy.config.update({"engine.autoreload.on": False})
_cp_config = cartd_globals.cherrypy_config()
application = with_client_share(with_duties(compose(_runtime, _cp_config if os.path.exists(_cp_config) else None)),
                                _runtime.settings.trusted_proxies)
