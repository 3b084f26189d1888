"""The distributions of ``distributions/`` as an operator installs them: each wheel ships its
own package alone, a service installs with the core and without the other service, both live in
one virtualenv without overwriting each other, and ``python setup.py install`` works with the
setuptools a new virtualenv ships (seed 004 still documents it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.procs import run

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("pacifica-core", "pacifica-ingest", "pacifica-cartd", "pacifica-ingest-agent")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """The three wheels, built from a copy of the tree (an in-tree build leaves build/ behind)."""
    tree = tmp_path_factory.mktemp("tree")
    for part in ("distributions", "pacifica", "README.md"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, tree / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, tree / part)
    out = tmp_path_factory.mktemp("wheels")
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                 *(str(tree / "distributions" / name) for name in NAMES)], timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    found = {name: next(out.glob(name.replace("-", "_") + "-*.whl")) for name in NAMES}
    return {**found, "tree": tree}


def _packages(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {"/".join(name.split("/")[:2]) for name in archive.namelist() if ".dist-info/" not in name}


def test_each_wheel_ships_its_own_package_alone(wheels):
    assert _packages(wheels["pacifica-core"]) == {"pacifica/core"}
    assert _packages(wheels["pacifica-ingest"]) == {"pacifica/ingest"}
    assert _packages(wheels["pacifica-cartd"]) == {"pacifica/cartd"}
    assert _packages(wheels["pacifica-ingest-agent"]) == {"pacifica/agent"}


def test_the_agent_installs_on_an_instrument_pc_without_the_services(wheels, tmp_path):
    """Its own wheel and three libraries: nothing of the services, their core, Celery or CherryPy."""
    venv = tmp_path / "agent-venv"
    made = run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    _pip(python, "install", "-q", str(wheels["pacifica-ingest-agent"]))
    _pip(python, "check")
    assert "watch" in _script_runs(venv, "pacifica-ingest-agent")
    assert _imports(python, "pacifica.agent.__main__")
    installed = {line.split("==")[0].lower() for line in _pip(python, "freeze").stdout.splitlines()}
    assert {"requests", "tuspy", "watchdog"} <= installed
    assert not installed & {"celery", "cherrypy", "peewee", "pacifica-core", "pacifica-ingest"}


def _venv(path: Path) -> Path:
    """A new virtualenv with the pinned dependencies (the image's lock) and nothing of ours."""
    made = run([sys.executable, "-m", "venv", str(path)], timeout=120)
    assert made.returncode == 0, made.stderr
    python = path / "bin" / "python"
    deps = run([str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-lock.txt")], timeout=900)
    assert deps.returncode == 0, deps.stderr[-3000:]
    return python


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    done = run([str(python), "-m", "pip", *args], timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _imports(python: Path, module: str) -> bool:
    """Whether ``module`` imports in that virtualenv (run from its own folder: ``-c`` puts the
    working directory first on the path, and this checkout's would answer)."""
    return run([str(python), "-c", f"import {module}"], timeout=60, cwd=str(python.parent)).returncode == 0


def _script_runs(venv: Path, script: str) -> str:
    done = run([str(venv / "bin" / script), "--help"], timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_each_service_installs_alone_and_both_together(wheels, tmp_path):
    venv = tmp_path / "venv"
    python = _venv(venv)
    _pip(python, "install", "-q", "--no-deps", str(wheels["pacifica-core"]), str(wheels["pacifica-ingest"]))
    assert "pacifica-ingest-cmd" in _script_runs(venv, "pacifica-ingest-cmd")
    assert _imports(python, "pacifica.ingest.tasks") and not _imports(python, "pacifica.cartd")
    _pip(python, "install", "-q", "--no-deps", str(wheels["pacifica-cartd"]))
    _pip(python, "check")
    assert "pacifica-cartd-cmd" in _script_runs(venv, "pacifica-cartd-cmd")
    assert _imports(python, "pacifica.ingest.tasks") and _imports(python, "pacifica.cartd.tasks")
    _pip(python, "uninstall", "-q", "-y", "pacifica-ingest")
    assert _imports(python, "pacifica.cartd.tasks") and _imports(python, "pacifica.core.http"), \
        "removing one service took files of another"
    assert not _imports(python, "pacifica.ingest")


def test_setup_py_install_works_with_the_setuptools_of_a_new_virtualenv(wheels, tmp_path):
    venv = tmp_path / "venv"
    python = _venv(venv)
    for name in ("pacifica-core", "pacifica-cartd"):
        installed = run([str(python), "setup.py", "-q", "install"], cwd=wheels["tree"] / "distributions" / name,
                        timeout=600)
        assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
    assert "pacifica-cartd-cmd" in _script_runs(venv, "pacifica-cartd-cmd")
    assert _imports(python, "pacifica.cartd.tasks") and not _imports(python, "pacifica.ingest")
