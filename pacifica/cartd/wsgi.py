"""Run the Cart Server under a WSGI server: ``uwsgi --module pacifica.cartd.wsgi``."""

from __future__ import annotations

import os

from . import globals as cartd_globals
from .rest import make_app
from .runtime import configure

configure()
_cp_config = cartd_globals.cherrypy_config()
application = make_app(_cp_config if os.path.exists(_cp_config) else None)
