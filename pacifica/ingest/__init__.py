"""Pacifica Ingest: receive data bundles, validate them and stream them into the archive."""

__version__ = "1.0.0"
