"""The progress bar of long commands."""

from __future__ import annotations

import io
import threading

from pacifica.core.terminal import Progress, progress_bar, render


def test_a_line_shows_the_stage_the_percent_and_the_bytes():
    assert render(Progress("ingest files", 50.0, 3 << 29, 3 << 30)) == \
        "[###############...............]  50.0 % ingest files, 1.5 GiB of 3.0 GiB"
    assert render(Progress("open tar", 0.0)) == f"[{'.' * 30}]   0.0 % open tar"
    assert render(Progress("x", 250.0)).startswith("[" + "#" * 30 + "] 100.0 %")


def test_the_bar_is_redrawn_until_the_work_ends_and_its_line_is_ended():
    stream = io.StringIO()
    steps = iter([Progress("load metadata", 10.0), Progress("ingest files", 60.0, 600, 1000)])
    last = [Progress("ingest files", 60.0, 600, 1000)]
    released = threading.Event()

    def read():
        last[0] = next(steps, last[0])
        return last[0]

    with progress_bar(read, stream, interval=0.01, done=released.set):
        threading.Event().wait(0.1)
    shown = stream.getvalue()
    assert "\r[###......" in shown and "load metadata" in shown
    assert shown.endswith("ingest files, 600 B of 1000 B\n")
    assert released.is_set(), "the drawing thread did not give back what it opened"


def test_a_bar_that_cannot_be_read_draws_nothing_and_lets_the_work_go_on():
    stream = io.StringIO()

    def broken():
        raise RuntimeError("database gone")

    with progress_bar(broken, stream, interval=0.01):
        threading.Event().wait(0.05)
    assert stream.getvalue() == ""
