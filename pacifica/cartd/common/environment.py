"""Where the service's configuration files are looked for (``CARTD_CONFIG``, ``CARTD_CPCONFIG``)."""

from __future__ import annotations

import os
from collections.abc import Mapping

CONFIG_ENV = "CARTD_CONFIG"
CPCONFIG_ENV = "CARTD_CPCONFIG"


def config_file(environ: Mapping[str, str] | None = None) -> str:
    """The service configuration file: ``CARTD_CONFIG`` or ``~/.pacifica-cartd/config.ini``."""
    environ = os.environ if environ is None else environ
    return environ.get(CONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".pacifica-cartd", "config.ini")


def cherrypy_config(environ: Mapping[str, str] | None = None) -> str:
    """The CherryPy configuration file: ``CARTD_CPCONFIG`` or ``~/.pacifica-cartd/cpconfig.ini``."""
    environ = os.environ if environ is None else environ
    return environ.get(CPCONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".pacifica-cartd", "cpconfig.ini")
