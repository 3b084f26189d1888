"""Environment variable names and default file locations, computed when asked for.

The published service evaluated these at import time, so a later ``-c`` or a changed
``INGEST_CONFIG`` never took effect. Here the module attributes ``CONFIG_FILE`` and
``CHERRYPY_CONFIG`` are still available, but each read looks at the environment again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

CONFIG_ENV = "INGEST_CONFIG"
CPCONFIG_ENV = "INGEST_CPCONFIG"


def default_dir() -> str:
    """Return the per-user directory holding the default configuration files."""
    return os.path.join(os.path.expanduser("~"), ".pacifica-ingest")


def config_file(environ: Mapping[str, str] | None = None) -> str:
    """Return the service configuration path: ``INGEST_CONFIG`` or the per-user default."""
    environ = os.environ if environ is None else environ
    return environ.get(CONFIG_ENV) or os.path.join(default_dir(), "config.ini")


def cherrypy_config() -> str:
    """Return the CherryPy configuration path: ``INGEST_CPCONFIG`` or the per-user default."""
    return os.environ.get(CPCONFIG_ENV, os.path.join(default_dir(), "cpconfig.ini"))


def __getattr__(name: str) -> str:
    if name == "CONFIG_FILE":
        return config_file()
    if name == "CHERRYPY_CONFIG":
        return cherrypy_config()
    raise AttributeError(name)
