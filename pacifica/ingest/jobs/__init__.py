"""What happens to a job: the Celery app (``celery_app``), the stage table (``stages``), the
stages' work (``pipeline``), the one writer of a job's state (``record``), preflight
(``validate``), callbacks, recovery, housekeeping, and what a process works with (``runtime``).
"""
