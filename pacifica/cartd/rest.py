"""The published ``rest`` module of cartd: the cart resource under the names seed 004 documents.

The resource lives in ``web.resources``; this face keeps every documented name importable
from here.
"""

from __future__ import annotations

from .web.resources import (
    CartInterfaceError,
    CartRoot,
    app_config,
    bytes_type,
    content_disposition,
    error_page_default,
    file_problems,
    make_app,
    unexpected_error,
)

__all__ = ["CartInterfaceError", "CartRoot", "app_config", "bytes_type", "content_disposition",
           "error_page_default", "file_problems", "make_app", "unexpected_error"]
