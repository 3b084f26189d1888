"""Throwaway virtualenvs holding a published Pacifica package, built once and cached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def legacy_venv(venv: Path, requirement: str, *extra: str) -> Path:
    """A virtualenv at ``venv`` with ``requirement`` (and ``extra`` packages) installed; return it."""
    marker = venv / "installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", requirement, *extra],
                                   capture_output=True, text=True, timeout=900)
        assert installed.returncode == 0, f"could not install {requirement}:\n{installed.stderr}"
        marker.write_text(requirement)
    return venv
