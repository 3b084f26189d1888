"""JSON from a client: read within a size limit, decoded with a bound on its nesting (no document
can make the parser recurse until the interpreter gives up, which would answer 500), and held
compactly, so that a large body costs the server as little memory as Python objects allow.
"""

from __future__ import annotations

import json
from typing import Any

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
    if declared is not None and declared > limit:
        raise TooLarge(f"the body of {declared} bytes is larger than {limit} bytes")
    buffer = bytearray()
    while True:
        block = rfile.read(min(READ_BLOCK, limit + 1 - len(buffer)))
        if not block:
            return buffer
        buffer += block
        if len(buffer) > limit:
            raise TooLarge(f"the body is larger than {limit} bytes")


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
    if isinstance(raw, bytearray):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused(f"body is not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        finally:
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
