"""Settings read the same way by every service: built-in defaults, then the INI file, then
environment variables, then explicit overrides; each value checked and typed."""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError

_SIZE_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "b": 1, "Kb": 1024, "Mb": 1024**2, "Gb": 1024**3, "Tb": 1024**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}


def parse_size(size: str | int) -> int:
    """Parse a size such as ``"4 Mb"`` (binary) or ``"10 MB"`` (decimal) into bytes.

    A bare number is taken as bytes. Units are case-sensitive, as in the published service:
    ``B KB MB GB TB`` are powers of 1000 and ``b Kb Mb Gb Tb`` (or ``KiB MiB GiB TiB``) powers of 1024.
    """
    if isinstance(size, int):
        return size
    text = str(size).strip()
    parts = text.split()
    try:
        if len(parts) == 1:
            return int(float(parts[0]))
        number, unit = parts
        return int(float(number) * _SIZE_UNITS[unit])
    except (ValueError, KeyError):
        raise ValueError(f"not a size: {size!r} (expected e.g. '4 Mb' or '1048576')") from None


_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*(/\s*s)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_rate(rate: str) -> int:
    """Parse a rate such as ``"50MB/s"``, ``"50 Mb/s"`` or ``"0"`` (no limit) into bytes a second,
    with the units of ``parse_size``."""
    match = _RATE.match(str(rate))
    if match is None:
        raise ValueError(f"not a rate: {rate!r} (expected e.g. '50MB/s' or '0' for no limit)")
    number, unit, _per_second = match.groups()
    return parse_size(f"{number} {unit}" if unit else number)


def parse_duration(text: str) -> float:
    """Parse a duration such as ``"90d"``, ``"12h"``, ``"30m"`` or ``"45s"`` into seconds (a bare
    number is days)."""
    value = str(text).strip()
    unit = value[-1:].lower() if value[-1:].isalpha() else "d"
    number = value[:-1] if value[-1:].isalpha() else value
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"not a duration: {text!r} (expected e.g. '90d', '12h', '30m')") from None
    if seconds < 0:
        raise ValueError(f"not a duration: {text!r} (it is negative)")
    return seconds


def _at_least(parse: Callable[[str], Any], minimum: float) -> Callable[[str], Any]:
    """A coercer: ``parse`` the value and refuse anything below ``minimum``."""

    def coerce(value: str) -> Any:
        number = parse(value)
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {value!r}")
        return number

    return coerce


_positive_size = _at_least(parse_size, 1)
_non_negative_size = _at_least(parse_size, 0)
_non_negative_int = _at_least(int, 0)
_non_negative_float = _at_least(float, 0)


def _networks(value: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks (``10.0.0.5``, ``10.1.0.0/16``); validated, kept as text."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return items


def _log_format(value: str) -> str:
    """``text`` (lines for people) or ``json`` (one JSON object a line, for machines)."""
    value = value.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"log_format must be text or json, got {value!r}")
    return value


def _names(value: str) -> tuple[str, ...]:
    """Comma-separated names (user names, say), blanks dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _directories(value: str) -> tuple[str, ...]:
    """Comma-separated absolute directories."""
    items = tuple(os.path.normpath(item.strip()) for item in value.split(",") if item.strip())
    for item in items:
        if not os.path.isabs(item):
            raise ValueError(f"not an absolute directory: {item!r}")
    return items


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: where it lives in the INI file, its environment override and default."""

    section: str
    key: str
    env: str
    default: str
    field: str
    coerce: Callable[[str], Any] = str


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


def _auto_bool(value: str) -> bool | None:
    return None if value.strip().lower() == "auto" else _bool(value)


def read_options(options: tuple[Option, ...], path: str | None, explicit: bool, environ: Mapping[str, str],
                 overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read ``options`` from the INI file at ``path`` (which must exist if ``explicit``), the
    environment and ``overrides`` (field name to raw string); return field name to typed value,
    with ``config_file`` the file read (or None).

    A ``data_dir`` field is ``~``-expanded and made absolute, and ``{data_dir}`` in any later
    value is replaced by it.
    """
    parser = configparser.ConfigParser(interpolation=None)
    if path is not None and os.path.exists(path):
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    elif explicit:
        raise ConfigError(f"config file not found: {path}")
    else:
        path = None
    values: dict[str, Any] = {"config_file": path}
    overrides = overrides or {}
    data_dir = ""
    for option in options:
        raw = option.default
        if parser.has_option(option.section, option.key):
            raw = parser.get(option.section, option.key)
        if option.env in environ:
            raw = environ[option.env]
        if option.field in overrides:
            raw = overrides[option.field]
        if option.field == "data_dir":
            raw = data_dir = os.path.abspath(os.path.expanduser(raw))
        else:
            raw = raw.replace("{data_dir}", data_dir)
        try:
            values[option.field] = option.coerce(raw)
        except ValueError as exc:
            raise ConfigError(f"[{option.section}] {option.key} (env {option.env}): {exc}") from None
    return values
