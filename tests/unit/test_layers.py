"""The house: ``pacifica.core`` under both services, the services apart, each service in its
layers (import-linter's contracts in ``.importlinter``), and no import cycle anywhere, counting
imports made inside functions (``tools/import_cycles.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tools import import_cycles

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is not installed (pip install -e '.[test]')"
    result = subprocess.run([lint_imports, "--config", str(REPO / ".importlinter")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and " kept" in result.stdout


def test_no_module_of_the_package_takes_part_in_an_import_cycle(capsys):
    assert import_cycles.main([str(REPO)]) == 0, capsys.readouterr().out
    assert "0 below the top level, 0 cycles" in capsys.readouterr().out


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pacifica" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_cycle_check_sees_a_cycle_closed_inside_a_function(tmp_path, capsys):
    root = _package(tmp_path, {
        "__init__.py": "",
        "svc/__init__.py": "",
        "svc/a.py": "from . import b\n",
        "svc/b.py": "def late():\n    from .a import thing\n",
        "svc/c.py": "from .b import late\n",
    })
    assert import_cycles.main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "1 below the top level, 1 cycles" in out
    assert "cycle of 2: pacifica.svc.a, pacifica.svc.b" in out
