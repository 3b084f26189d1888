"""A new user's first minutes: the README's first command on a fresh checkout, then its example.

The command runs verbatim, in a copy of this checkout, with a new home directory (so the
embedded data directory starts empty) and its own new virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.support.archive import archive_listing
from tests.support.procs import Proc, host_lock, wait_for

ROOT = Path(__file__).resolve().parents[3]


def readme_blocks(section: str) -> list[str]:
    """The ```sh blocks of a README section, in order."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n{section}\n", 1)[1]
    body = re.split(r"\n## ", body, maxsplit=1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", body, re.DOTALL)]


def checkout_copy(target: Path) -> Path:
    """Copy the files git tracks (or would track) to ``target``, like a fresh clone of this tree."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_readme_quick_start_on_a_fresh_machine(tmp_path):
    # The README's commands use the default ports 8066 and 8081 as written: runs take turns.
    with host_lock("default-ports"):
        _quick_start(tmp_path)


def _quick_start(tmp_path):
    install_and_run = readme_blocks("## Quick start")[0]
    upload, poll = readme_blocks("### Try it")[0].splitlines()
    checkout = checkout_copy(tmp_path / "checkout")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
    for name in ("INGEST_CONFIG", "INGEST_DATA_DIR", "VIRTUAL_ENV", "PYTHONPATH"):
        env[name] = None
    service = Proc("readme", ["bash", "-c", install_and_run], tmp_path / "readme.log", env=env,
                   cwd=str(checkout)).start()
    try:
        service.wait_http("http://127.0.0.1:8066/", 600)
        shell = {"cwd": str(checkout), "capture_output": True, "text": True, "timeout": 60,
                 "env": {key: value for key, value in {**os.environ, **env}.items() if value is not None}}
        accepted = json.loads(subprocess.run(["bash", "-c", upload], **shell, check=True).stdout)
        assert (accepted["job_id"], accepted["task"]) == (1, "UPLOADING"), accepted

        def completed():
            state = json.loads(subprocess.run(["bash", "-c", poll], **shell, check=True).stdout)
            return state if state["complete"] else None

        final = wait_for(completed, 60, "the example job to complete", interval=0.5)
        assert (final["state"], final["task"], final["task_percent"]) == ("OK", "ingest metadata", "100.0"), final
        _download_the_example_as_a_cart(checkout, env, shell, tmp_path)
    finally:
        service.stop()

    archive = home / ".pacifica-ingest" / "data" / "archive"
    with tarfile.open(checkout / "examples" / "bundle.tar") as tar:
        metadata = json.loads(tar.extractfile("metadata.txt").read())
        members = {info.name: tar.extractfile(info).read() for info in tar.getmembers() if info.name != "metadata.txt"}
    stored = {name: (archive / name).read_bytes() for name in archive_listing(archive)}
    files = [item for item in metadata if item["destinationTable"] == "Files"]
    assert len(stored) == len(files) == len(members)
    assert sorted(stored.values()) == sorted(members.values()), "the archive does not hold the example's bytes"


def _download_the_example_as_a_cart(checkout: Path, env: dict, shell: dict, tmp_path: Path) -> None:
    """The README's cart lines: the embedded cartd serves the files the embedded ingest archived."""
    start, request, fetch = readme_blocks("### Try it")[1].splitlines()
    assert start.endswith(" &")
    cartd = Proc("readme-cartd", ["bash", "-c", start[:-2]], tmp_path / "cartd.log", env=env,
                 cwd=str(checkout)).start()
    try:
        cartd.wait_http("http://127.0.0.1:8081/", 60)
        created = json.loads(subprocess.run(["bash", "-c", request], **shell, check=True).stdout)
        assert created == {"message": "Cart Processing has begun"}
        listing = subprocess.run(["bash", "-c", fetch], **shell, check=True).stdout.split()
        with tarfile.open(checkout / "example.tar") as tar:
            served = {info.name: tar.extractfile(info).read() for info in tar.getmembers() if info.isfile()}
    finally:
        cartd.stop()
    example = {name.removeprefix("data/"): (checkout / "examples" / "bundle" / name).read_bytes()
               for name in ("data/mywork/experiment/results.csv", "data/mywork/project/proposal.txt")}
    assert {name.removeprefix("example/"): data for name, data in served.items() if "manifest" not in name} == \
        example, listing


def test_ci_runs_the_readme_test_command():
    command = readme_blocks("## Quick start")[1]
    assert command in (ROOT / ".ci" / "run").read_text(), ".ci/run does not run the README's test command"


def test_example_bundle_matches_its_sources():
    with tarfile.open(ROOT / "examples" / "bundle.tar") as tar:
        for info in tar.getmembers():
            assert tar.extractfile(info).read() == (ROOT / "examples" / "bundle" / info.name).read_bytes(), info.name
