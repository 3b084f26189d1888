"""Find import cycles among the ``pacifica`` modules, counting imports made inside functions too.

Run ``python tools/import_cycles.py`` from the repository root: it prints every cycle (a strongly
connected group of modules) and the imports made below the top level of a module, and exits 1 if
there is a cycle. CI runs it; import-linter checks the layers, this checks that no deferred import
hides a cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pacifica"


def module_name(path: Path, root: Path = ROOT) -> str:
    """Return the dotted module name of a file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` (a directory under ``root``), by dotted name."""
    return {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}


def _absolute(name: str, current: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """Return (imported module, line, made below the top level) for each project import."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports guarded by if/try at the top level count as top level
        if isinstance(node, ast.If | ast.Try):
            top_level.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node.module or "", name, is_package, node.level, node.module)
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno, id(node) not in top_level))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def main(argv: list[str] | None = None) -> int:
    """Print the counts, the deferred imports and the cycles of the package in the directory
    ``argv[0]`` (default: this repository); return 1 if there is a cycle."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]).resolve() if argv else ROOT
    found = modules(root)
    known = set(found)
    graph: dict[str, set[str]] = {name: set() for name in found}
    deferred = []
    total = 0
    for name, path in found.items():
        for target, line, nested in imports(name, path, known):
            graph[name].add(target)
            total += 1
            if nested:
                deferred.append(f"{path.relative_to(root)}:{line} -> {target}")
    groups = cycles(graph)
    print(f"{len(found)} modules, {total} project imports, {len(deferred)} below the top level, "
          f"{len(groups)} cycles")
    for line in deferred:
        print(f"  deferred: {line}")
    for group in groups:
        print(f"  cycle of {len(group)}: {', '.join(group)}")
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
