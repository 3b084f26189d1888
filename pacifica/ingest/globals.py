"""The published ``globals`` module: environment variable names and default file locations.

They live in ``common.environment``; ``CONFIG_FILE`` and ``CHERRYPY_CONFIG`` are still read
from the environment each time they are asked for.
"""

from __future__ import annotations

from .common import environment
from .common.environment import CONFIG_ENV, CPCONFIG_ENV, cherrypy_config, config_file, default_dir

__all__ = ["CONFIG_ENV", "CPCONFIG_ENV", "cherrypy_config", "config_file", "default_dir"]
__getattr__ = environment.__getattr__
