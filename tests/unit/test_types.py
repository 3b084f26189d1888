"""The types hold: mypy over the whole package (``mypy.ini``), in CI as every other test."""

from __future__ import annotations

from pathlib import Path

from mypy import api

REPO = Path(__file__).resolve().parents[2]


def test_the_package_type_checks():
    out, err, status = api.run(["--config-file", str(REPO / "mypy.ini"), "--no-incremental",
                                str(REPO / "pacifica")])
    assert status == 0, out[-6000:] + err[-2000:]
    assert out.startswith("Success: no issues found"), out
