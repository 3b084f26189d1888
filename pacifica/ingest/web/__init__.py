"""HTTP only: the resources (``resources``, ``uploads`` for tus, ``jobs_page``, ``ops``,
``openapi``) and the kit they share (``kit``: the caller, ids, refusals, queueing a job).
"""
