"""The published ``rest`` module: the HTTP resources under the names the 0.4 manual documents.

The resources live in ``web.resources``; this face keeps every documented name importable
from here.
"""

from __future__ import annotations

from .web.kit import get_authed_user, get_remote_user
from .web.resources import (
    SERVER_DEFAULTS,
    RestIngestState,
    RestMove,
    RestUpload,
    RestValidate,
    Root,
    app_config,
    error_page_default,
    make_app,
    unexpected_error,
)

__all__ = ["SERVER_DEFAULTS", "RestIngestState", "RestMove", "RestUpload", "RestValidate", "Root", "app_config",
           "error_page_default", "get_authed_user", "get_remote_user", "make_app", "unexpected_error"]
