"""The published clients, driven as a scientist drives them, against the published peers.

pacifica-cli 0.5.2 is configured non-interactively (its answers piped in, as its own CI does)
and uploads a directory of several files; it runs against the archive interface under its own
CherryPy server and under uWSGI ``--http-socket`` with several processes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.support.published import published_client_venv, run_published

UPLOADER_JSON = Path(__file__).resolve().parents[2] / "support" / "files" / "uploader.json"
# The example for the embedded service: fixed values, no policy service to ask.
EMBEDDED_UPLOADER_JSON = Path(__file__).resolve().parents[3] / "examples" / "pacifica-cli" / "uploader.json"
SEED_LOGON = "dmlb2001"  # user 10 of the metadata service's seed data


@pytest.fixture(scope="session")
def cli_venv() -> Path:
    return published_client_venv("pacifica-cli==0.5.2")


def configure_cli(venv: Path, home: Path, stack, policy_url: str,
                  uploader_json: Path = UPLOADER_JSON) -> dict[str, str]:
    """``pacifica-cli configure`` with its questions answered on standard input; return its environment."""
    home.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "UPLOADER_CONFIG": str(uploader_json), "PAGER": ""}
    answers = "\n".join([stack.url + "/upload", stack.url + "/get_state", policy_url + "/uploader",
                         policy_url + "/ingest", "http://127.0.0.1:9/", policy_url + "/status/transactions/by_id",
                         "True", "None"]) + "\n"
    import subprocess

    configured = subprocess.run([str(venv / "bin" / "pacifica-cli"), "configure"], input=answers, text=True,
                                capture_output=True, env={**os.environ, **env, "PYTHONPATH": ""}, timeout=120,
                                cwd=str(home))
    assert configured.returncode == 0, configured.stdout + configured.stderr
    return env


@pytest.mark.parametrize("name", ["postgres-redis", "postgres-redis-uwsgi"])
def test_pacifica_cli_uploads_a_directory(name, stacks, peers, cli_venv, tmp_path):
    stack = stacks.get(name)
    env = configure_cli(cli_venv, tmp_path / "home", stack, peers.policy.url)
    run_dir = tmp_path / "run-42"
    (run_dir / "spectra").mkdir(parents=True)
    sources = {f"spectra/scan{number:02d}.dat": os.urandom(50_000 + number) for number in range(12)}
    sources["notes.txt"] = b"instrument log\n" * 100
    for relative, data in sources.items():
        (run_dir / relative).write_bytes(data)

    result = run_published(cli_venv, ["pacifica-cli", "upload", "--logon", SEED_LOGON, "--instrument", "54",
                                      "--project", "1234a", "run-42"], env=env, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Done." in result.stdout, result.stdout[-3000:]
    status = json.loads(result.stdout[result.stdout.rindex("Done.") + len("Done."):])
    assert (status["state"], status["task"], status["task_percent"]) == ("OK", "ingest metadata", "100.0"), status
    assert status["exception"] == ""

    files = stack.files(int(status["job_id"]))
    assert len(files) == len(sources)
    by_name = {item["name"]: item for item in files}
    for relative, data in sources.items():
        item = by_name[os.path.basename(relative)]
        stored = stack.archived(item["_id"]).read_bytes()
        assert stored == data, relative
        assert item["hashsum"] == hashlib.sha1(data).hexdigest()


def test_pacifica_cli_uploads_to_the_embedded_service_with_the_example_configuration(cli_venv, tmp_path):
    """examples/pacifica-cli/uploader.json: fixed submitter, instrument and project, so the
    client asks no policy service (the embedded service has none to ask)."""
    from tests.conftest import embedded_stack

    stack = embedded_stack("cli-embedded", tmp_path / "s")
    stack.start_server()
    try:
        env = configure_cli(cli_venv, tmp_path / "home", stack, stack.url, EMBEDDED_UPLOADER_JSON)
        run_dir = tmp_path / "run-7"
        (run_dir / "frames").mkdir(parents=True)
        sources = {f"frames/f{number}.dat": os.urandom(1000 + number) for number in range(3)}
        for relative, data in sources.items():
            (run_dir / relative).write_bytes(data)
        result = run_published(cli_venv, ["pacifica-cli", "upload", "run-7"], env=env, timeout=300, cwd=str(tmp_path))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        status = json.loads(result.stdout[result.stdout.rindex("Done.") + len("Done."):])
        assert (status["state"], status["task"], status["complete"]) == ("OK", "ingest metadata", True), status
        document = stack.metadata(int(status["job_id"]))
        transaction = {item["destinationTable"]: item.get("value") for item in document
                       if item["destinationTable"].startswith("Transactions.")}
        assert (transaction["Transactions.submitter"], transaction["Transactions.instrument"],
                transaction["Transactions.project"]) == ("10", "54", "1234a"), transaction
        stored = sorted(stack.archived(item["_id"]).read_bytes() for item in stack.files(int(status["job_id"])))
        assert stored == sorted(sources.values())
    finally:
        stack.stop()
