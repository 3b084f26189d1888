"""Preflight: every problem a bundle would meet, found before its bytes are sent.

``POST /validate`` takes the would-be ``metadata.txt`` (a JSON list), or an object
``{"metadata": [...], "files": [{"name": "data/...", "size": N}, ...]}`` that also lists the
tar's members, and runs the checks of 'load metadata' and 'Policy Validation' on it. No job is
created and nothing is stored.

The request is read from a file one object at a time (``jsonbody.items``): a document of a few
hundred thousand objects is checked, and sent on to the policy service, without the server ever
holding it as Python objects, which would cost four times its size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from ...core import jsonbody
from ...core.redact import Problems
from ..bundles import document
from ..common.errors import PeerRejected
from ..db.archived import Owner
from ..peers.base import PolicyPort
from ..volume.manifest import FILE, ManifestWriter
from . import quotas

SHAPE = 'the body must be the metadata (a JSON list) or {"metadata": [...], "files": [...]}'
FILES_SHAPE = '"files" must be a list of {"name", "size"} objects'


def listed_members(files: Iterator[Any], found: Problems, writer: ManifestWriter) -> None:
    """The members of a request's ``files`` list into ``writer``, each a regular file; a problem
    in ``found`` for each malformed one."""
    for position, item in enumerate(files):
        name = item.get("name") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or isinstance(size, bool) or not isinstance(size, int) or size < 0:
            found.add(f"files[{position}] must be {{\"name\": member name, \"size\": bytes}}, got {item!r}"[:300])
            continue
        writer.add_member(name, FILE, size)


def _over_quota(handle: IO[bytes], prefix: str, user: str) -> list[str]:
    """The quotas the document's files would go over: its user's, and its project's and
    instrument's (``Transactions.project``, ``Transactions.instrument``)."""
    size = files = 0
    for item in jsonbody.items(handle, prefix):
        if item.get("destinationTable") == document.FILES_TABLE:
            files += 1
            size += item["size"] if isinstance(item.get("size"), int) and item["size"] > 0 else 0
    values = document.transaction_values(jsonbody.items(handle, prefix))
    return quotas.problems(Owner(user, values.get("project"), values.get("instrument")), size, files)


def problems(handle: IO[bytes], shape: jsonbody.Outline, user: str, policy: PolicyPort,
             scratch: str | None = None) -> Problems:
    """Every problem of the preflight request in ``handle`` (outlined as ``shape``): its shape,
    the document, the members, the policy. A member list is matched against the Files objects
    by the rules of 'load metadata', in a manifest made in the directory ``scratch`` and dropped.

    A policy that cannot be reached raises ``PeerUnavailable`` (the caller answers 503).
    """
    found = Problems()
    files = None
    if shape.kind == "array":
        prefix = "item"
    elif shape.kind == "map" and "metadata" in shape.members:
        prefix = "metadata.item"
        if shape.members["metadata"] != "array":
            found.add("metadata must be a JSON list of objects")
            return found
        files = shape.members.get("files")
        if files not in (None, "null", "array"):
            found.add(FILES_SHAPE)
            files = None
    else:
        found.add(SHAPE)
        return found
    if files == "array":
        with tempfile.TemporaryDirectory(dir=scratch) as directory, \
                ManifestWriter(os.path.join(directory, "validate.sqlite3")) as writer:
            check = document.StructureCheck(on_entry=writer.add_entry)
            for index, item in enumerate(jsonbody.items(handle, prefix)):
                check.add(index, item)
            listed_members(jsonbody.items(handle, "files.item"), found, writer)
            found.extend(check.problems())
            found.extend(writer.match())
    else:
        check = document.StructureCheck()
        for index, item in enumerate(jsonbody.items(handle, prefix)):
            check.add(index, item)
        found.extend(check.problems())
    if not check.not_objects:
        found.extend(_over_quota(handle, prefix, user))
    if check.not_objects or policy.structural_only:
        return found  # such a policy would only run the structural checks above again
    try:
        policy.check_ingest((document.peer_item(item) for item in jsonbody.items(handle, prefix)), user)
    except PeerRejected as exc:
        found.add(f"policy: {exc.detail}")
    return found
