"""The composition root: settings, database, broker, peers and spool put together (``bootstrap``),
and the one server composition the CLI and the WSGI module share (``server``). Nothing below
imports it.
"""
