"""The state and task strings that clients, the CLI and tests depend on.

They are exactly those of the published service; keep them byte for byte.
"""

from __future__ import annotations

from decimal import Decimal

OK = "OK"
FAILED = "FAILED"

UPLOADING = "UPLOADING"
OPEN_TAR = "open tar"
LOAD_METADATA = "load metadata"
POLICY_VALIDATION = "Policy Validation"
INGEST_FILES = "ingest files"
MOVE_FILES = "move files"
INGEST_METADATA = "ingest metadata"


def is_complete(state: str, task: str, task_percent: float | Decimal) -> bool:
    """Tell whether a job is finished: it failed, or its last stage reached 100 %."""
    return state == FAILED or (task == INGEST_METADATA and float(task_percent) >= 100)
