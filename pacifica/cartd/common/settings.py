"""Cartd settings (seed 004 §2.2): built-in defaults, the INI file, then environment variables.

The sections and keys are the published ones (``[cartd]``, ``[archiveinterface]``, ``[celery]``,
``[database]``), and so are the environment variables. Two defaults differ: the volume and the
SQLite database live in a data directory (``CARTD_DATA_DIR``, ``~/.pacifica-cartd/data``)
instead of ``/tmp/`` and the working directory.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ...core.settings import (
    Option,
    _at_least,
    _auto_bool,
    _bool,
    _log_format,
    _names,
    _networks,
    _non_negative_float,
    _non_negative_int,
    _positive_size,
    read_options,
)
from . import environment as cartd_globals

EMBEDDED = "embedded:"
# The ingest service's default data directory (its embedded archive is "archive" in it).
INGEST_DATA_DIR = "~/.pacifica-ingest/data"

OPTIONS: tuple[Option, ...] = (
    Option("cartd", "data_dir", "CARTD_DATA_DIR", "~/.pacifica-cartd/data", "data_dir"),
    Option("cartd", "volume_path", "VOLUME_PATH", "{data_dir}/volume", "volume_path"),
    Option("cartd", "transfer_size", "TRANSFER_SIZE", "4 Mb", "transfer_size", _positive_size),
    Option("cartd", "lru_buffer_time", "LRU_BUFFER_TIME", "0", "lru_buffer_time", _non_negative_float),
    Option("cartd", "lru_purge", "LRU_PURGE", "on", "lru_purge", _bool),
    Option("cartd", "bundle_task", "BUNDLE_TASK", "off", "bundle_task", _bool),
    # Whether pacifica-cartd (and the WSGI module) run a Celery worker beside the web server:
    # true, false, or auto (only when broker_url is embedded).
    Option("cartd", "embedded_worker", "CARTD_EMBEDDED_WORKER", "auto", "embedded_worker", _auto_bool),
    Option("cartd", "worker_concurrency", "CARTD_WORKER_CONCURRENCY", "2", "worker_concurrency",
           _at_least(int, 1)),
    # "text" (lines for people) or "json" (a JSON object a line, with cart_id, peer and duration).
    Option("cartd", "log_format", "CARTD_LOG_FORMAT", "text", "log_format", _log_format),
    # Embedded by default, as the ingest service: the files the embedded ingest archived, a queue
    # on disk and an in-process worker. An http(s):// URL is the archive interface (0.7.0's
    # default was http://127.0.0.1:8080/); file:///dir reads archived files from a directory.
    Option("cartd", "auth_header", "CARTD_AUTH_HEADER", "X-Http-Authed-User", "auth_header"),
    Option("cartd", "default_user", "CARTD_DEFAULT_USER", "root", "default_user"),
    Option("cartd", "trusted_proxies", "CARTD_TRUSTED_PROXIES", "", "trusted_proxies", _networks),
    Option("cartd", "operators", "CARTD_OPERATORS", "", "operators", _names),
    Option("cartd", "allow_anonymous", "CARTD_ALLOW_ANONYMOUS", "false", "allow_anonymous", _bool),
    # The embedded ingest's database, which tells whose jobs archived which files: with identities
    # configured, a user's carts may hold only the files of their own jobs. Default: the SQLite
    # database beside the embedded archive. Used only with the embedded archive.
    Option("cartd", "ingest_database", "CARTD_INGEST_DATABASE", "", "ingest_database"),
    Option("auth", "issuer", "CARTD_AUTH_ISSUER", "", "auth_issuer"),
    Option("auth", "audience", "CARTD_AUTH_AUDIENCE", "", "auth_audience"),
    Option("auth", "user_claim", "CARTD_AUTH_USER_CLAIM", "preferred_username", "auth_user_claim"),
    Option("archiveinterface", "url", "ARCHIVE_INTERFACE_URL", EMBEDDED, "archive_url"),
    # Where "url = embedded:" finds the archived files: the embedded archive of the ingest service
    # on this machine. Empty: <INGEST_DATA_DIR or ~/.pacifica-ingest/data>/archive, the ingest
    # service's own default.
    Option("archiveinterface", "embedded_path", "CARTD_EMBEDDED_ARCHIVE", "", "embedded_archive"),
    # "embedded:" queues carts as files in {data_dir}/queue (0.7.0's default was pyamqp://).
    Option("celery", "broker_url", "BROKER_URL", EMBEDDED, "broker_url"),
    # "embedded:" keeps no task results (a cart's state is in the database either way).
    Option("celery", "backend_url", "BACKEND_URL", EMBEDDED, "backend_url"),
    # Not in the published service, which always used Celery's default queue: set it to share a
    # broker with the ingest service (whose workers take tasks from "celery") without mixing tasks.
    Option("celery", "queue", "CARTD_QUEUE", "celery", "queue"),
    Option("database", "peewee_url", "PEEWEE_URL", "sqliteext:///{data_dir}/cartd.sqlite3", "peewee_url"),
    Option("database", "connect_attempts", "DATABASE_CONNECT_ATTEMPTS", "10", "connect_attempts",
           _non_negative_int),
    Option("database", "connect_wait", "DATABASE_CONNECT_WAIT", "20", "connect_wait", _non_negative_float),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every cartd setting, typed. Build it with ``load_settings``."""

    data_dir: str
    volume_path: str
    transfer_size: int
    lru_buffer_time: float
    lru_purge: bool
    bundle_task: bool
    embedded_worker: bool | None
    worker_concurrency: int
    log_format: str
    auth_header: str
    default_user: str
    trusted_proxies: tuple[str, ...]
    operators: tuple[str, ...]
    allow_anonymous: bool
    ingest_database: str
    auth_issuer: str
    auth_audience: str
    auth_user_claim: str
    archive_url: str
    embedded_archive: str
    broker_url: str
    backend_url: str
    queue: str
    peewee_url: str
    connect_attempts: int
    connect_wait: float
    config_file: str | None = None


def _embedded(settings_value: str) -> bool:
    return settings_value.strip().rstrip("/") == EMBEDDED


def archive_embedded(settings: Settings) -> bool:
    """True when carts are made from the embedded ingest's own archive."""
    return _embedded(settings.archive_url)


def broker_embedded(settings: Settings) -> bool:
    """True when carts are queued in the data directory rather than on a broker server."""
    return _embedded(settings.broker_url)


def run_embedded_worker(settings: Settings) -> bool:
    """Whether the server starts a worker beside itself (auto: with the embedded broker)."""
    return broker_embedded(settings) if settings.embedded_worker is None else settings.embedded_worker


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, str] | None = None) -> Settings:
    """Read the settings: defaults, then the INI file, then the environment, then ``overrides``.

    ``path`` is the INI file (``-c``); when omitted, ``CARTD_CONFIG`` or the per-user default is
    used if it exists. A path given explicitly must exist.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None or bool(environ.get(cartd_globals.CONFIG_ENV))
    if path is None:
        path = cartd_globals.config_file(environ)
    values = read_options(OPTIONS, path, explicit, environ, overrides)
    if not values["embedded_archive"]:
        ingest_data = environ.get("INGEST_DATA_DIR") or INGEST_DATA_DIR
        values["embedded_archive"] = os.path.join(os.path.abspath(os.path.expanduser(ingest_data)), "archive")
    if not values["ingest_database"]:
        values["ingest_database"] = "sqliteext:///" + os.path.join(os.path.dirname(values["embedded_archive"]),
                                                                   "ingest.sqlite3")
    return Settings(**values)


def get_config(settings: Settings | None = None) -> configparser.ConfigParser:
    """Return the ConfigParser object with defaults set (the settings, as INI values)."""
    settings = settings or load_settings()
    parser = configparser.ConfigParser(interpolation=None)
    for option in OPTIONS:
        if not parser.has_section(option.section):
            parser.add_section(option.section)
        value: Any = getattr(settings, option.field)
        if isinstance(value, bool):
            value = "on" if value else "off"
        parser.set(option.section, option.key, str(value))
    return parser
