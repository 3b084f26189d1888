"""JSON from a client: decoded with a bound on its nesting, so that no document can make the
parser recurse until the interpreter gives up (which would answer 500)."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class JsonRefused(ValueError):
    """A body that is not JSON this service takes; the message says why."""


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


def loads(raw: bytes | str, limit: int = MAX_DEPTH) -> Any:
    """``raw`` decoded; ``JsonRefused`` if it is not JSON or nests deeper than ``limit``."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonRefused(f"the JSON nests deeper than {limit} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRefused(f"body is not valid JSON: {str(exc)[:200]}") from None
    if depth_of(value, limit) > limit:
        raise JsonRefused(f"the JSON nests deeper than {limit} levels")
    return value
