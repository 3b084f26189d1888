"""The metadata document of a bundle (or a move request) and its agreement with the tar.

A document is a JSON list of objects. Objects whose ``destinationTable`` is ``Files`` describe
one file each: ``name``, ``subdir`` (``data/...`` inside a bundle), ``size``, ``hashtype`` (a
hashlib algorithm) and ``hashsum``; a move document gives each file a ``source`` path instead
of tar bytes. Everything here is pure: no network, no database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from collections.abc import Callable, Iterable
from typing import Any

from ...core import jsonbody
from ...core.redact import Problems, summarise
from ..common.errors import MetadataError

FILES_TABLE = "Files"
TRANSACTION_ID = "Transactions._id"
REQUIRED_TRANSACTION_FIELDS = ("Transactions.submitter", "Transactions.project", "Transactions.instrument")


@dataclasses.dataclass(slots=True)
class FileEntry:
    """One Files object of a document, with what the pipeline needs to archive it (slotted: a
    bundle can describe hundreds of thousands)."""

    index: int
    name: str
    subdir: str
    size: int | None
    hashtype: str
    hashsum: str
    source: str | None = None
    member: str | None = None
    offset: int | None = None
    mtime: float | None = None
    file_id: int | None = None
    digest: str | None = None  # the SHA-1 of the member's bytes taken while the upload arrived

    @property
    def path(self) -> str:
        """The file's path inside the bundle: ``data/<subdir>/<name>``, slashes normalised."""
        return file_path(self.subdir, self.name)

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-serialisable data (for the job's sidecar)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def file_path(subdir: str, name: str) -> str:
    """The path inside a bundle of the file ``name`` in ``subdir``: ``data/<subdir>/<name>``,
    slashes normalised."""
    return "/".join(["data", *filter(None, clip(subdir).split("/")), name])


def clip(path: str) -> str:
    """Return ``path`` without its leading ``data`` component and without empty components."""
    parts = [part for part in path.split("/") if part]
    if parts and parts[0] == "data":
        parts = parts[1:]
    return "/".join(parts)


def parse_document(raw: bytes | str) -> list[dict[str, Any]]:
    """Decode a metadata document; raise ``MetadataError`` unless it is a JSON list of objects."""
    try:
        document = jsonbody.loads(raw)
    except jsonbody.JsonRefused as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc}") from None
    if not isinstance(document, list):
        raise MetadataError("metadata must be a JSON list of objects")
    for position, item in enumerate(document):
        if not isinstance(item, dict):
            raise MetadataError(f"metadata item {position} is not an object")
    return document


def normalise_hashsum(hashtype: str, hashsum: str) -> str:
    """Return ``hashsum`` in lower case without an ``<algorithm>:`` prefix."""
    value = hashsum.strip().lower()
    prefix = f"{hashtype.lower()}:"
    return value.removeprefix(prefix)


def file_entries(document: list[dict[str, Any]], *, move: bool = False) -> list[FileEntry]:
    """Return the Files objects of ``document``, checking each is complete.

    Every problem is collected and reported together in one ``MetadataError``.
    """
    entries, problems = checked_entries(document, move=move)
    if problems:
        raise MetadataError(summarise(problems))
    return entries


def checked_entries(document: Iterable[Any], *, move: bool = False) -> tuple[list[FileEntry], list[str]]:
    """Return the complete Files objects of ``document`` and a problem for each incomplete one."""
    entries, problems = [], []
    for index, item in enumerate(document):
        if isinstance(item, dict) and item.get("destinationTable") == FILES_TABLE:
            entry, problem = checked_entry(index, item, move=move)
            if entry is not None:
                entries.append(entry)
            else:
                problems.append(problem)
    return entries, problems


def checked_entry(index: int, item: dict[str, Any], *, move: bool = False) -> tuple[FileEntry | None, str]:
    """The ``FileEntry`` of the Files object ``item`` (at ``index``) and no problem, or None and
    what makes it incomplete."""
    label = f"Files object {index} ({item.get('subdir', '?')}/{item.get('name', '?')})"
    missing = [key for key in ("name", "subdir", "hashtype", "hashsum") if not isinstance(item.get(key), str)]
    if move and not isinstance(item.get("source"), str):
        missing.append("source")
    if missing:
        return None, f"{label}: missing or non-string {', '.join(missing)}"
    size = item.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        return None, f"{label}: size must be a non-negative integer, got {size!r}"
    if item["hashtype"].lower() not in hashlib.algorithms_available:
        return None, f"{label}: hashtype {item['hashtype']!r} is not a known hash algorithm"
    name = item["name"]
    if not name or "/" in name or name in (".", ".."):
        return None, f"{label}: name must be a plain file name"
    if ".." in clip(item["subdir"]).split("/"):
        return None, f"{label}: subdir must not contain '..'"
    return FileEntry(
        index=index, name=name, subdir=item["subdir"], size=size,
        hashtype=item["hashtype"].lower(),
        hashsum=normalise_hashsum(item["hashtype"], item["hashsum"]),
        source=item.get("source"),
    ), ""


def member_name(name: str) -> str:
    """Normalise a tar member name: no leading './' or '/', no empty components."""
    return posixpath.normpath("/" + name).lstrip("/") if name else name


def assign_ids(document: list[dict[str, Any]], entries: list[FileEntry], start: int) -> list[dict[str, Any]]:
    """Give each Files object the next id from ``start``; return the document with ``_id`` set."""
    document = _copied(document)
    for offset, entry in enumerate(entries):
        entry.file_id = start + offset
        document[entry.index]["_id"] = entry.file_id
    return document


def _copied(document: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``document`` whose objects can be changed at the top level without touching the
    original (a deep copy of ten thousand objects takes longer than archiving them)."""
    return [dict(item) for item in document]


def for_peers(document: list[dict[str, Any]], job_id: int) -> list[dict[str, Any]]:
    """Return the document as the policy and metadata services receive it.

    Files objects keep their ``_id`` and lose the ``data/`` prefix of ``subdir``; the
    transaction id (the job id) is appended as ``{"destinationTable": "Transactions._id"}``.
    """
    return [peer_item(item) for item in document] + [{"destinationTable": TRANSACTION_ID, "value": int(job_id)}]


def transaction_values(items: Iterable[Any]) -> dict[str, str]:
    """The values a document gives its transaction (``Transactions.project`` and the like), by
    field name ('project'), as text; the first of each wins."""
    values: dict[str, str] = {}
    for item in items:
        table = item.get("destinationTable") if isinstance(item, dict) else None
        if isinstance(table, str) and table.startswith("Transactions.") and item.get("value") is not None:
            values.setdefault(table.partition(".")[2], str(item["value"]))
    return values


def peer_item(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of one object of a document as the peers receive it (see ``for_peers``)."""
    item = dict(item)
    if item.get("destinationTable") == FILES_TABLE and isinstance(item.get("subdir"), str):
        item["subdir"] = clip(item["subdir"])
    return item


def structure_problems(document: Any) -> Problems:
    """Return every structural problem of a metadata document (empty when it is well formed).

    A document is a list of objects (or here an iterator of them, read once), names its
    submitter, project and instrument with a non-empty value, and has complete Files objects.
    """
    if isinstance(document, (str, bytes, dict)) or not isinstance(document, Iterable):
        return Problems(["metadata must be a JSON list of objects"])
    check = StructureCheck()
    for index, item in enumerate(document):
        check.add(index, item)
    return check.problems()


class StructureCheck:
    """The checks of ``structure_problems``, fed one object at a time (``add``), so that a document
    read item by item is checked without being held; ``problems()`` once every object is in.

    ``on_entry`` is given each complete Files object (to match them against a member list)."""

    def __init__(self, *, on_entry: Callable[[FileEntry], None] | None = None) -> None:
        self.on_entry = on_entry
        self.not_objects = Problems()
        self.incomplete = Problems()
        self.given: set[str] = set()
        self.empty: set[str] = set()

    def add(self, index: int, item: Any) -> None:
        """Check the object at ``index`` of the document."""
        if not isinstance(item, dict):
            self.not_objects.add(f"metadata item {index} is not an object")
            return
        table = item.get("destinationTable")
        if table in REQUIRED_TRANSACTION_FIELDS:
            self.given.add(table)
            if item.get("value") in (None, ""):
                self.empty.add(table)
        elif table == FILES_TABLE:
            entry, problem = checked_entry(index, item)
            if entry is None:
                self.incomplete.add(problem)
            elif self.on_entry is not None:
                self.on_entry(entry)

    def problems(self) -> Problems:
        """Every problem found: objects that are not objects, missing or empty transaction
        fields, incomplete Files objects."""
        found = Problems(self.not_objects)
        for field in REQUIRED_TRANSACTION_FIELDS:
            if field not in self.given:
                found.add(f"{field} is missing")
            elif field in self.empty:
                found.add(f"{field} has no value")
        found.extend(self.incomplete)
        return found
