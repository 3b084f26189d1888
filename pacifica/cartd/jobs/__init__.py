"""Making carts: the Celery app (``celery_app``), the cart task and its work (``build``), recovery,
and what a process works with (``runtime``).
"""
