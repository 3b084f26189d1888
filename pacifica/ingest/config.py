"""The published ``config`` module: ``get_config()`` and the names it always offered.

The settings themselves live in ``settings``; this face renders them as the ``ConfigParser``
that code written for the published service still asks for.
"""

from __future__ import annotations

import configparser

from ..core.settings import Option, parse_size
from .app.bootstrap import runtime
from .common.settings import DEFAULT_DATA_DIR, EMBEDDED, OPTIONS, Settings, load_settings, settings_as_config

__all__ = ["DEFAULT_DATA_DIR", "EMBEDDED", "OPTIONS", "Option", "Settings", "get_config", "load_settings",
           "parse_size", "settings_as_config"]


def get_config() -> configparser.ConfigParser:
    """Return the ConfigParser object with defaults set (the active settings, as INI values)."""
    return settings_as_config(runtime().settings)
