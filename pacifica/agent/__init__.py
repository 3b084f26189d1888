"""``pacifica-ingest-agent``: sends what an instrument writes to the ingest service by itself.

It watches directories on the acquisition PC, waits until files are whole (quiet, or marked
done), bundles them by rule with metadata from a template, sends each bundle once with a
resumable (tus) upload, keeps a journal of every file, and deletes a source file, when asked to,
only once the service holds it whole. It imports nothing of the services: it needs
``requests``, ``tuspy`` and ``watchdog``, and runs where they run.
"""
