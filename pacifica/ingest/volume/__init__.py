"""The shared volume: bundles and per-job files (``spool``), resumable uploads (``resumable``), a
job's manifest (``manifest``), and reading request bodies onto it (``body``).
"""
