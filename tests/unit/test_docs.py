"""The documentation: the pages under docs/ build with MkDocs in strict mode (a broken link or
anchor, or a page missing from the navigation, fails), and the README stays a first screen whose
links all lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_build_in_strict_mode(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_the_readme_is_a_first_screen_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert local, "the README links to no page"
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, f"the README links to what does not exist: {missing}"
