"""The published ``orm`` module: the job state models and ``OrmSync``, the schema upgrader.

They live in ``db.models`` and ``compat.orm``; this face keeps every documented name
importable from here.
"""

from __future__ import annotations

from .compat.orm import (
    COMPLETION_HOOKS,
    DB,
    SCHEMA_MAJOR,
    SCHEMA_MINOR,
    BaseModel,
    IngestCallback,
    IngestMetadata,
    IngestState,
    IngestStateEvent,
    IngestStateSystem,
    IngestUniqueId,
    OrmSync,
    Progress,
    claim_job,
    read_history,
    read_state,
    update_state,
    utcnow,
)

__all__ = ["COMPLETION_HOOKS", "DB", "SCHEMA_MAJOR", "SCHEMA_MINOR", "BaseModel", "IngestCallback", "IngestMetadata",
           "IngestState", "IngestStateEvent", "IngestStateSystem", "IngestUniqueId", "OrmSync", "Progress",
           "claim_job", "read_history", "read_state", "update_state", "utcnow"]
