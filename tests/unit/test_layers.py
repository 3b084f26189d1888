"""The house's layers: ``pacifica.core`` under both services, and the two services apart.

Cartd and ingest evolve separately: neither imports the other; both stand on ``pacifica.core``,
which imports neither. Checked on the source (every import statement, at any depth).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pacifica"


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules that ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("cartd", ("pacifica.ingest",)),
    ("ingest", ("pacifica.cartd",)),
    ("core", ("pacifica.ingest", "pacifica.cartd")),
])
def test_a_layer_imports_nothing_of_the_layers_it_must_not_know(layer, forbidden):
    offenders = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = sorted(name for name in imported_modules(path) if name.startswith(forbidden))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert offenders == {}


def test_the_check_sees_relative_imports():
    names = imported_modules(PACKAGE / "cartd" / "runtime.py")
    assert "pacifica.core.database" in names and "pacifica.cartd.config" in names
