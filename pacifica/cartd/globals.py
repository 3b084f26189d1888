"""The published ``globals`` module of cartd: where its configuration files are looked for.

They live in ``common.environment``; the two paths are still offered as constants.
"""

from __future__ import annotations

from .common.environment import CONFIG_ENV, CPCONFIG_ENV, cherrypy_config, config_file

__all__ = ["CHERRYPY_CONFIG", "CONFIG_ENV", "CONFIG_FILE", "CPCONFIG_ENV", "cherrypy_config", "config_file"]

# The published module exposed these two paths as constants.
CONFIG_FILE = config_file()
CHERRYPY_CONFIG = cherrypy_config()
