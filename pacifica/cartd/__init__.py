"""Pacifica Cartd: stages archived files, bundles them into a tar and serves the download.

Work in progress: settings, the schema and its migrations, and ``pacifica-cartd-cmd dbsync``
and ``dbchk`` are here; the REST resource, the Celery tasks and the server come next.
"""
