"""Preflight: every problem a bundle would meet, found before its bytes are sent.

``POST /validate`` takes the would-be ``metadata.txt`` (a JSON list), or an object
``{"metadata": [...], "files": [{"name": "data/...", "size": N}, ...]}`` that also lists the
tar's members, and runs the checks of 'load metadata' and 'Policy Validation' on it. No job is
created and nothing is stored.
"""

from __future__ import annotations

import tarfile
from typing import Any

from . import bundle
from .errors import PeerRejected
from .peers.base import PolicyPort
from .peers.policy import EmbeddedPolicy


def split_request(body: Any) -> tuple[Any, list[tarfile.TarInfo] | None, list[str]]:
    """Return the document, the members (None when not given) and the problems of the request's shape."""
    if isinstance(body, list):
        return body, None, []
    if not isinstance(body, dict) or "metadata" not in body:
        return None, None, ['the body must be the metadata (a JSON list) or {"metadata": [...], "files": [...]}']
    files = body.get("files")
    if files is None:
        return body["metadata"], None, []
    if not isinstance(files, list):
        return body["metadata"], None, ['"files" must be a list of {"name", "size"} objects']
    members, problems = [], []
    for position, item in enumerate(files):
        name = item.get("name") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or isinstance(size, bool) or not isinstance(size, int) or size < 0:
            problems.append(f"files[{position}] must be {{\"name\": member name, \"size\": bytes}}, got {item!r}"[:300])
            continue
        info = tarfile.TarInfo(name)
        info.size = size
        members.append(info)
    return body["metadata"], members, problems


def problems(body: Any, user: str, policy: PolicyPort) -> list[str]:
    """Every problem of a preflight request: its shape, the document, the members, the policy.

    A policy that cannot be reached raises ``PeerUnavailable`` (the caller answers 503).
    """
    document, members, found = split_request(body)
    if document is None:
        return found
    found += bundle.structure_problems(document)
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        return found
    if members is not None:
        entries, _incomplete = bundle.checked_entries(document)
        found += bundle.member_problems(entries, members)
    if isinstance(policy, EmbeddedPolicy):
        return found  # it only runs the structural checks above again
    try:
        policy.check_ingest(bundle.for_peers(document, 0)[:-1], user)
    except PeerRejected as exc:
        found.append(f"policy: {exc.detail}")
    return found
