"""The log set-up of every entry point (servers, admin tools, WSGI modules, workers).

``text`` is lines for people; ``json`` is one JSON object a line for machines, with the fields a
record carries among ``FIELDS`` (``extra={"job_id": ...}``) beside time, level, logger and message.
"""

from __future__ import annotations

import datetime
import json
import logging

from .redact import redact_credentials

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("job_id", "cart_id", "stage", "peer", "duration")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the ``FIELDS`` the
    record carries, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RedactingTextFormatter(logging.Formatter):
    """Lines for people, with the credentials of every URL taken out (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_credentials(super().format(record))


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines, with the credentials of every URL taken out."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_credentials(super().format(record))


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``); neither writes a URL's password."""
    return RedactingJsonFormatter() if log_format == "json" else RedactingTextFormatter(TEXT_FORMAT)


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    """Send log records to stderr with time, level and logger name (entry points only)."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    use_format(log_format)
    # CherryPy writes its own error and access logs (log.screen); don't print them twice.
    logging.getLogger("cherrypy").propagate = False


def use_format(log_format: str) -> None:
    """Switch every handler of the root logger to ``log_format`` (once the settings are known)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format))
