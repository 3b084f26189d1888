"""How far a cart's staging has got: bytes and files staged of the total.

The worker keeps the counts in a small JSON file beside the cart on the volume, which the web
server already shares with it, and ``HEAD`` reads them from there. The database keeps exactly the
published schema, so the published cartd can still use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable

FIELDS = ("bytes_staged", "bytes_total", "files_staged", "files_total")
HEADERS = {field: "X-Pacifica-" + "-".join(part.capitalize() for part in field.split("_")) for field in FIELDS}


def read(path: str) -> dict[str, int] | None:
    """The counts last written to ``path``, or None when there are none."""
    try:
        with open(path, encoding="utf-8") as handle:
            counts = json.load(handle)
        return {field: int(counts[field]) for field in FIELDS}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(path: str) -> None:
    """Forget the counts of a deleted cart."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Tracker:
    """The worker's side: counts that are written at most every ``interval`` seconds.

    ``check`` runs at every write; it may raise to stop the work (the cart was deleted).
    """

    def __init__(self, path: str, interval: float = 0.5, check: Callable[[], None] | None = None) -> None:
        self.path = path
        self.interval = interval
        self.check = check
        self.counts = dict.fromkeys(FIELDS, 0)
        self._written = float("-inf")

    def set(self, **counts: int) -> None:
        """Set counts and write them now."""
        self.counts.update(counts)
        self.flush()

    def add_bytes(self, size: int) -> None:
        """Count ``size`` more bytes staged; written if ``interval`` has passed."""
        self.counts["bytes_staged"] += size
        self.tick()

    def tick(self) -> None:
        """Write the counts (and run ``check``) if ``interval`` has passed since the last write."""
        if time.monotonic() - self._written >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Write the counts (atomically: a reader sees the old or the new ones)."""
        if self.check is not None:
            self.check()
        self._written = time.monotonic()
        temp = f"{self.path}.{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(self.counts, handle)
        os.replace(temp, self.path)
