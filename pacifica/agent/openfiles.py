"""Which files some process still holds open for writing (Linux: ``/proc``; elsewhere none are
known, and the quiet period and markers decide alone).

A detector that pauses longer than the quiet period between frames would have its file sent
half-written; a file open for writing is never whole yet, whatever its mtime says.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

PROC = "/proc"
# The access mode bits of fdinfo's octal "flags": O_WRONLY (1) or O_RDWR (2).
_ACCMODE = 0o3


def open_for_writing(paths: Iterable[str]) -> set[str]:
    """The files of ``paths`` that a process of this machine has open for writing (empty where
    ``/proc`` cannot tell, or for processes this user may not look into)."""
    wanted = {os.path.realpath(path) for path in paths}
    if not wanted or not os.path.isdir(os.path.join(PROC, "self", "fd")):
        return set()
    found: set[str] = set()
    for pid in os.listdir(PROC):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(PROC, pid, "fd")
        try:
            descriptors = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in descriptors:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in wanted and _writable(pid, fd):
                found.add(target)
    return found


def _writable(pid: str, fd: str) -> bool:
    try:
        with open(os.path.join(PROC, pid, "fdinfo", fd), encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & _ACCMODE != 0
    except (OSError, ValueError):
        return False
    return False
