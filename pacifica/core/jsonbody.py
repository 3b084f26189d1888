"""JSON from a client: read within a size limit, decoded with a bound on its nesting (no document
can make the parser recurse until the interpreter gives up, which would answer 500), and held
compactly, so that a large body costs the server as little memory as Python objects allow.

A body too large to hold as Python objects (a metadata document of a few hundred thousand
objects costs four times its size so) is kept in a file instead (``spool_limited``), checked in
one streaming pass (``outline``) and then read one item at a time (``items``): the server holds
one item, never the document.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import IO, Any

# A streaming parser in C (yajl): a large document is checked and read item by item without
# building it, which the standard library's json cannot do.
import ijson

MAX_DEPTH = 64
READ_BLOCK = 1 << 20
# Values of these keys repeat across the items of a metadata document (every Files object has the
# same destinationTable, most the same subdir, hashtype and mimetype): one string object for each.
REPEATED_KEYS = frozenset({"destinationTable", "subdir", "hashtype", "mimetype", "key", "ctime", "mtime"})


class JsonRefused(ValueError):
    """A body that is not JSON this service takes; the message says why."""


class TooLarge(JsonRefused):
    """A body over the size limit (413)."""


def read_limited(rfile: Any, limit: int, declared: int | None = None) -> bytearray:
    """The body, read in blocks into one buffer: ``TooLarge`` as soon as it passes ``limit`` (or
    at once when its declared length does), never holding it twice."""
    buffer = bytearray()
    copy_limited(rfile, buffer.extend, limit, declared)
    return buffer


def spool_limited(rfile: Any, sink: IO[bytes], limit: int, declared: int | None = None) -> IO[bytes]:
    """The body, copied in blocks into the file ``sink`` (``TooLarge`` as for ``read_limited``),
    which is returned at its start."""
    copy_limited(rfile, sink.write, limit, declared)
    sink.flush()
    sink.seek(0)
    return sink


def copy_limited(rfile: Any, write: Any, limit: int, declared: int | None = None) -> int:
    """Copy the body to ``write`` block by block; ``TooLarge`` as soon as it passes ``limit`` bytes
    (at once when its declared length does). Return how many bytes were copied."""
    if declared is not None and declared > limit:
        raise TooLarge(f"the body of {declared} bytes is larger than {limit} bytes")
    copied = 0
    while True:
        block = rfile.read(min(READ_BLOCK, limit + 1 - copied))
        if not block:
            return copied
        copied += len(block)
        if copied > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")
        write(block)


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests (0 for a scalar), counting no further than ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(raw: bytes | bytearray | str, limit: int = MAX_DEPTH) -> Any:
    """``raw`` decoded; ``JsonRefused`` if it is not JSON or nests deeper than ``limit``.

    A ``bytearray`` is consumed: it is emptied as soon as it is decoded to text, before the
    objects are built.
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused(f"body is not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        finally:
            if isinstance(raw, bytearray):
                raw.clear()
    else:
        text = raw
    memo: dict[str, str] = {}

    def compact(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        return {key: memo.setdefault(value, value) if key in REPEATED_KEYS and type(value) is str else value
                for key, value in pairs}

    try:
        value = json.loads(text, object_pairs_hook=compact)
    except RecursionError:
        raise JsonRefused(f"the JSON nests deeper than {limit} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRefused(f"body is not valid JSON: {str(exc)[:200]}") from None
    finally:
        del text
    if depth_of(value, limit) > limit:
        raise JsonRefused(f"the JSON nests deeper than {limit} levels")
    return value


@dataclasses.dataclass(frozen=True)
class Outline:
    """What a streaming pass saw of a document: the kind of its top-level value (``array``,
    ``map``, ``string``, ``integer``, ``double``, ``boolean`` or ``null``) and, for a map, the
    kind of the value of each of its keys."""

    kind: str
    members: dict[str, str]


_OPENS = {"start_map": "map", "start_array": "array"}
_CLOSES = frozenset({"end_map", "end_array"})


def outline(handle: IO[bytes], limit: int = MAX_DEPTH) -> Outline:
    """Check in one streaming pass that ``handle`` holds one JSON value nesting no deeper than
    ``limit`` (``JsonRefused`` otherwise, as ``loads``) and return its outline; the handle is
    left at its start. Nothing of the document is kept but the outline."""
    handle.seek(0)
    kind, depth, key = "", 0, ""
    members: dict[str, str] = {}
    try:
        for event, value in ijson.basic_parse(handle, use_float=True):
            opened = _OPENS.get(event)
            if depth == 0 and not kind:
                kind = opened or event
            elif depth == 1 and kind == "map":
                if event == "map_key":
                    key = value
                elif event not in _CLOSES:
                    members[key] = opened or event
            if opened:
                depth += 1
                if depth > limit:
                    raise JsonRefused(f"the JSON nests deeper than {limit} levels")
            elif event in _CLOSES:
                depth -= 1
    except ijson.JSONError as exc:
        raise JsonRefused(f"body is not valid JSON: {str(exc).strip()[:200]}") from None
    finally:
        handle.seek(0)
    return Outline(kind, members)


def items(handle: IO[bytes], prefix: str = "item") -> Iterator[Any]:
    """The values at ``prefix`` of the (outlined) document in ``handle``, one at a time: ``item``
    for the items of a top-level list, ``<key>.item`` for the items of a list under ``key``."""
    handle.seek(0)
    yield from ijson.items(handle, prefix, use_float=True)


def dump_items(values: Any, sink: IO[bytes]) -> IO[bytes]:
    """Write ``values`` (any iterable) to ``sink`` as one JSON list, one value at a time; return
    ``sink`` at its start."""
    sink.write(b"[")
    for position, value in enumerate(values):
        if position:
            sink.write(b",")
        sink.write(json.dumps(value, allow_nan=False).encode("ascii"))
    sink.write(b"]")
    sink.flush()
    sink.seek(0)
    return sink
