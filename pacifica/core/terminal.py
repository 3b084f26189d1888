"""A progress bar for long commands run at a terminal (a multi-gigabyte ``retry``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple, TextIO

WIDTH = 30


class Progress(NamedTuple):
    """Where a long piece of work is: its stage, percent, and bytes done of bytes in all."""

    stage: str
    percent: float
    done: int = 0
    total: int = 0


def human_size(count: int) -> str:
    """``count`` bytes for a person: ``512 B``, ``1.5 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def render(progress: Progress) -> str:
    """One line: ``[#####.....]  45.0 % ingest files, 1.2 GiB of 2.6 GiB``."""
    percent = max(0.0, min(100.0, progress.percent))
    filled = round(WIDTH * percent / 100)
    line = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {percent:5.1f} % {progress.stage}"
    if progress.total:
        line += f", {human_size(progress.done)} of {human_size(progress.total)}"
    return line


@contextlib.contextmanager
def progress_bar(read: Callable[[], Progress | None], stream: TextIO, interval: float = 0.5,
                 done: Callable[[], None] | None = None) -> Iterator[None]:
    """Redraw ``read()`` on one line of ``stream`` every ``interval`` seconds while the block runs
    (``read`` runs in a thread of its own; ``done`` is called in that thread before it ends, to
    give back what it opened). The line is ended when the block ends."""
    stop = threading.Event()
    width = [0]

    def draw() -> None:
        try:
            while True:
                # Read whether to stop first: once the work has ended, the line is drawn once more,
                # with where the work ended.
                last = stop.is_set()
                try:
                    progress = read()
                except Exception:  # noqa: BLE001 - a bar that cannot be read is not drawn; the work goes on
                    progress = None
                if progress is not None:
                    line = render(progress)
                    stream.write("\r" + line.ljust(width[0]))
                    stream.flush()
                    width[0] = len(line)
                if last:
                    return
                stop.wait(interval)
        finally:
            if done is not None:
                done()

    drawer = threading.Thread(target=draw, name="progress bar", daemon=True)
    drawer.start()
    try:
        yield
    finally:
        stop.set()
        drawer.join(timeout=5)
        if width[0]:
            stream.write("\n")
            stream.flush()
