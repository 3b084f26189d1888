"""The version of this code, which every command prints with ``--version`` and every
distribution of ``distributions/`` is built as."""

__version__ = "1.0.0"
