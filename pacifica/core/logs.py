"""The log set-up of every entry point (servers, admin tools, WSGI modules)."""

from __future__ import annotations

import logging


def configure_logging(level: int = logging.INFO) -> None:
    """Send log records to stderr with time, level and logger name (entry points only)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # CherryPy writes its own error and access logs (log.screen); don't print them twice.
    logging.getLogger("cherrypy").propagate = False
