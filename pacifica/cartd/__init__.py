"""Pacifica Cartd: stages archived files, bundles them into a tar and serves the download.

``pacifica-cartd`` (or ``pacifica.cartd.wsgi``) serves the REST resource (``rest``); Celery
workers (``celery -A pacifica.cartd.tasks worker``, or the server's own, embedded) make the
carts (``staging``); ``pacifica-cartd-cmd`` syncs and checks the schema and purges old carts.
"""
