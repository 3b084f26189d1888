"""Settings: built-in defaults, then the INI file, then environment variables.

``load_settings()`` reads everything once and returns a typed, immutable ``Settings``; the
composition root (``bootstrap``) hands it to whoever needs it.
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
    _directories,
    _log_format,
    _names,
    _networks,
    _non_negative_float,
    _non_negative_int,
    _non_negative_size,
    _positive_size,
    parse_duration,
    parse_rate,
    read_options,
)
from . import environment as ingest_globals

EMBEDDED = "embedded:"
DEFAULT_DATA_DIR = "~/.pacifica-ingest/data"

OPTIONS: tuple[Option, ...] = (
    Option("ingest", "data_dir", "INGEST_DATA_DIR", DEFAULT_DATA_DIR, "data_dir"),
    Option("ingest", "volume_path", "VOLUME_PATH", "{data_dir}/volume", "volume_path"),
    Option("ingest", "auth_header", "INGEST_AUTH_HEADER", "X-Http-Authed-User", "auth_header"),
    Option("ingest", "default_user", "INGEST_DEFAULT_USER", "root", "default_user"),
    Option("ingest", "trusted_proxies", "INGEST_TRUSTED_PROXIES", "", "trusted_proxies", _networks),
    Option("ingest", "allow_anonymous", "INGEST_ALLOW_ANONYMOUS", "false", "allow_anonymous", _bool),
    Option("ingest", "callback_hosts", "INGEST_CALLBACK_HOSTS", "", "callback_hosts", _names),
    Option("ingest", "metadata_limit", "INGEST_METADATA_LIMIT", "64 Mb", "metadata_limit", _positive_size),
    Option("ingest", "move_roots", "INGEST_MOVE_ROOTS", "", "move_roots", _directories),
    Option("ingest", "operators", "INGEST_OPERATORS", "", "operators", _names),
    Option("ingest", "max_partials", "INGEST_MAX_PARTIALS", "64", "max_partials", _at_least(int, 1)),
    Option("ingest", "log_format", "INGEST_LOG_FORMAT", "text", "log_format", _log_format),
    Option("ingest", "transfer_size", "TRANSFER_SIZE", "4 Mb", "transfer_size", _positive_size),
    Option("ingest", "max_upload_size", "INGEST_MAX_UPLOAD_SIZE", "0", "max_upload_size", _non_negative_size),
    Option("ingest", "http_timeout", "INGEST_HTTP_TIMEOUT", "60", "http_timeout", _non_negative_float),
    Option("ingest", "http_retries", "INGEST_HTTP_RETRIES", "3", "http_retries", _non_negative_int),
    Option("ingest", "stage_retries", "INGEST_STAGE_RETRIES", "4", "stage_retries", _non_negative_int),
    Option("ingest", "retry_delay", "INGEST_RETRY_DELAY", "2", "retry_delay", _non_negative_float),
    Option("ingest", "failed_retention", "INGEST_FAILED_RETENTION", "168", "failed_retention", _non_negative_float),
    Option("ingest", "upload_expiry", "INGEST_UPLOAD_EXPIRY", "24", "upload_expiry", _non_negative_float),
    Option("ingest", "embedded_worker", "INGEST_EMBEDDED_WORKER", "auto", "embedded_worker", _auto_bool),
    Option("ingest", "worker_concurrency", "INGEST_WORKER_CONCURRENCY", "2", "worker_concurrency",
           _non_negative_int),
    Option("ingest", "archive_concurrency", "INGEST_ARCHIVE_CONCURRENCY", "1", "archive_concurrency",
           _at_least(int, 1)),
    Option("fixity", "interval", "FIXITY_INTERVAL", "24h", "fixity_interval", parse_duration),
    Option("fixity", "max_age", "FIXITY_MAX_AGE", "90d", "fixity_max_age", parse_duration),
    Option("fixity", "rate", "FIXITY_RATE", "50MB/s", "fixity_rate", parse_rate),
    Option("fixity", "include_tape", "FIXITY_INCLUDE_TAPE", "false", "fixity_include_tape", _bool),
    Option("fixity", "second_digest", "FIXITY_SECOND_DIGEST", "true", "fixity_second_digest", _bool),
    Option("fixity", "batch_files", "FIXITY_BATCH_FILES", "500", "fixity_batch_files", _at_least(int, 1)),
    Option("s3", "port", "INGEST_S3_PORT", "0", "s3_port", _non_negative_int),
    Option("s3", "address", "INGEST_S3_ADDRESS", "", "s3_address"),
    Option("s3", "region", "INGEST_S3_REGION", "us-east-1", "s3_region"),
    Option("s3", "key_file", "INGEST_S3_KEY_FILE", "{data_dir}/s3-secrets.key", "s3_key_file"),
    Option("s3", "certificate", "INGEST_S3_CERTIFICATE", "", "s3_certificate"),
    Option("s3", "private_key", "INGEST_S3_PRIVATE_KEY", "", "s3_private_key"),
    Option("auth", "issuer", "INGEST_AUTH_ISSUER", "", "auth_issuer"),
    Option("auth", "audience", "INGEST_AUTH_AUDIENCE", "", "auth_audience"),
    Option("auth", "user_claim", "INGEST_AUTH_USER_CLAIM", "preferred_username", "auth_user_claim"),
    Option("uniqueid", "url", "UNIQUEID_URL", EMBEDDED, "uniqueid_url"),
    Option("policy", "ingest_url", "POLICY_INGEST_URL", EMBEDDED, "policy_url"),
    Option("archiveinterface", "url", "ARCHIVEINTERFACE_URL", EMBEDDED, "archive_url"),
    Option("archiveinterface", "confirm_puts", "ARCHIVEINTERFACE_CONFIRM_PUTS", "auto", "confirm_puts",
           _auto_bool),
    Option("metadata", "ingest_url", "METADATA_INGEST_URL", EMBEDDED, "metadata_url"),
    Option("celery", "broker_url", "BROKER_URL", EMBEDDED, "broker_url"),
    Option("celery", "backend_url", "BACKEND_URL", EMBEDDED, "backend_url"),
    Option("database", "peewee_url", "PEEWEE_URL", "sqliteext:///{data_dir}/ingest.sqlite3", "peewee_url"),
    Option("database", "connect_attempts", "DATABASE_CONNECT_ATTEMPTS", "10", "connect_attempts",
           _non_negative_int),
    Option("database", "connect_wait", "DATABASE_CONNECT_WAIT", "20", "connect_wait", _non_negative_float),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the service, typed. Build it with ``load_settings``."""

    data_dir: str
    volume_path: str
    auth_header: str
    default_user: str
    trusted_proxies: tuple[str, ...]
    allow_anonymous: bool
    callback_hosts: tuple[str, ...]
    metadata_limit: int
    move_roots: tuple[str, ...]
    operators: tuple[str, ...]
    max_partials: int
    log_format: str
    transfer_size: int
    max_upload_size: int
    http_timeout: float
    http_retries: int
    stage_retries: int
    retry_delay: float
    failed_retention: float
    upload_expiry: float
    embedded_worker: bool | None
    worker_concurrency: int
    archive_concurrency: int
    fixity_interval: float
    fixity_max_age: float
    fixity_rate: int
    fixity_include_tape: bool
    fixity_second_digest: bool
    fixity_batch_files: int
    s3_port: int
    s3_address: str
    s3_region: str
    s3_key_file: str
    s3_certificate: str
    s3_private_key: str
    auth_issuer: str
    auth_audience: str
    auth_user_claim: str
    uniqueid_url: str
    policy_url: str
    archive_url: str
    confirm_puts: bool | None
    metadata_url: str
    broker_url: str
    backend_url: str
    peewee_url: str
    connect_attempts: int
    connect_wait: float
    config_file: str | None = None

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (values already typed)."""
        return dataclasses.replace(self, **changes)

    @property
    def broker_embedded(self) -> bool:
        """True when jobs are queued in the data directory rather than on a broker server."""
        return self.broker_url == EMBEDDED

    @property
    def run_embedded_worker(self) -> bool:
        """Whether ``pacifica-ingest`` starts a worker beside the web server (auto: with the embedded broker)."""
        return self.broker_embedded if self.embedded_worker is None else self.embedded_worker

    def data_path(self, *parts: str) -> str:
        """Return a path inside the data directory."""
        return os.path.join(self.data_dir, *parts)


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, str] | None = None) -> Settings:
    """Read the settings: defaults, then the INI file, then the environment, then ``overrides``.

    ``path`` is the INI file (``-c``); when omitted, ``INGEST_CONFIG`` or the per-user default is
    used if it exists. A path given explicitly must exist. ``overrides`` maps field names to
    raw strings (used by tests). Any value may contain ``{data_dir}``, replaced by the data
    directory (itself ``~``-expanded and made absolute).
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None or bool(environ.get(ingest_globals.CONFIG_ENV))
    if path is None:
        path = ingest_globals.config_file(environ)
    values = read_options(OPTIONS, path, explicit, environ, overrides)
    return Settings(**values)


def settings_as_config(settings: Settings) -> configparser.ConfigParser:
    """Render ``settings`` as the ``ConfigParser`` the published ``get_config()`` returned."""
    parser = configparser.ConfigParser(interpolation=None)
    for option in OPTIONS:
        if not parser.has_section(option.section):
            parser.add_section(option.section)
        value = getattr(settings, option.field)
        if option.field == "transfer_size":
            value = f"{value} B"
        elif option.coerce is parse_duration:
            value = f"{value:g}s"
        parser.set(option.section, option.key, str(value))
    return parser
