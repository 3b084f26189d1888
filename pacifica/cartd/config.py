"""The published ``config`` module of cartd: ``get_config()`` and the settings behind it.

The settings live in ``common.settings``; this face keeps every documented name importable
from here.
"""

from __future__ import annotations

from .common.settings import (
    EMBEDDED,
    INGEST_DATA_DIR,
    OPTIONS,
    Settings,
    archive_embedded,
    broker_embedded,
    get_config,
    load_settings,
    run_embedded_worker,
)

__all__ = ["EMBEDDED", "INGEST_DATA_DIR", "OPTIONS", "Settings", "archive_embedded", "broker_embedded", "get_config",
           "load_settings", "run_embedded_worker"]
