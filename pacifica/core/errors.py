"""Errors every service shares."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is invalid; raised at start-up, never during a job."""
