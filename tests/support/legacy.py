"""Throwaway virtualenvs holding a published Pacifica package, built once and cached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import host_lock


def legacy_venv(venv: Path, requirement: str, *extra: str) -> Path:
    """A virtualenv at ``venv`` with ``requirement`` (and ``extra`` packages) installed; return it."""
    marker = venv / "installed"
    if marker.exists():
        return venv
    # Two runs at once on one host share the cache: the second waits for the first to build it.
    with host_lock(f"venv-{venv.name}"):
        if marker.exists():
            return venv
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", requirement, *extra],
                                   capture_output=True, text=True, timeout=900)
        assert installed.returncode == 0, f"could not install {requirement}:\n{installed.stderr}"
        marker.write_text(requirement)
    return venv
