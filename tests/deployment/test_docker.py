"""The Docker image and the docker-compose stack, as a facility deploys them.

The image is built from this checkout with ``docker build``; alone, it runs the embedded service
and keeps its jobs in its volume across a restart. The stack comes up with ``docker-compose up``
on the README's file (plus ``compose.host.yml``: host networking, loopback addresses), and the
README's example bundle goes through the real uniqueid, policy, archive interface and metadata,
then comes back from cartd with the right bytes. Where Docker cannot run, these tests fail.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests

from tests.support.docker import ROOT, build_base_images, docker, ensure_engine
from tests.support.procs import host_lock, wait_for

IMAGE = "pacifica/ingest:local"
EXAMPLE = ROOT / "examples" / "bundle.tar"
PROJECT = "pacifica-ci"
OVERRIDE = ROOT / "tests" / "deployment" / "compose.host.yml"
COMPOSE: list[str] = []


def host_network_compose_file(target: Path) -> Path:
    """The README's docker-compose.yml without its published ports, which the engine refuses
    beside host networking (an override can add to a list, not remove from it)."""
    lines = (ROOT / "docker-compose.yml").read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("ports:")]
    assert len(lines) - len(kept) == 2, "expected the two published ports of ingest-web and cartd-web"
    target.write_text("".join(kept))
    return target


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A Docker engine with every base image the Dockerfile and the compose file name. The
    module holds the suite's host-wide lock on the default ports throughout: its containers, its
    compose project and the ports 8066 and 8081 have fixed names, so two runs take turns."""
    with host_lock("default-ports"):
        work = tmp_path_factory.mktemp("docker")
        ensure_engine(work / "dockerd.log")
        build_base_images(work)
        yield work


@pytest.fixture(scope="module")
def image(engine):
    docker("build", "--network", "host", "-t", IMAGE, str(ROOT), timeout=1200)
    return IMAGE


def _example_files() -> dict[str, bytes]:
    with tarfile.open(EXAMPLE) as tar:
        return {info.name: tar.extractfile(info).read() for info in tar.getmembers()
                if info.isfile() and info.name != "metadata.txt"}


def _upload_and_wait(url: str) -> dict:
    with open(EXAMPLE, "rb") as body:
        accepted = requests.post(url + "/upload", data=body, timeout=60,
                                 headers={"Content-Type": "application/octet-stream"})
    assert accepted.status_code == 200, accepted.text
    job_id = accepted.json()["job_id"]

    def complete():
        state = requests.get(url + "/get_state", params={"job_id": job_id}, timeout=30).json()
        return state if state["complete"] else None

    final = wait_for(complete, 120, f"job {job_id} to complete", interval=0.5)
    assert (final["state"], final["task"], final["task_percent"]) == ("OK", "ingest metadata", "100.0"), final
    return final


def _wait_http(url: str, timeout: float, what: str) -> None:
    def up():
        try:
            return requests.get(url, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout, what, interval=1)


def test_the_image_has_no_compiler_runs_as_a_user_and_pins_its_dependencies(image):
    checks = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", image, "-c",
                    "id -u; for c in gcc cc g++ clang; do command -v $c; done; pip check >&2; pip freeze")
    uid, *rest = checks.stdout.splitlines()
    assert uid != "0", "the image runs as root"
    assert not [line for line in rest if line.startswith("/")], f"a compiler is in the image: {rest}"
    ours = ("pacifica-core==", "pacifica-ingest==", "pacifica-cartd==")
    assert sorted(line.split("==")[0] for line in rest if line.lower().startswith(ours)) == [
        "pacifica-cartd", "pacifica-core", "pacifica-ingest"], "the image lacks one of the three distributions"
    installed = sorted(line for line in rest if "==" in line and not line.lower().startswith(ours))
    pinned = sorted(line for line in (ROOT / "requirements-lock.txt").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert installed == pinned


def test_the_image_alone_keeps_its_jobs_across_a_restart(image):
    volume = "pacifica-ci-standalone"
    name = "pacifica-ci-standalone"
    docker("rm", "-f", name, check=False)
    docker("volume", "rm", "-f", volume, check=False)
    docker("run", "-d", "--name", name, "--network", "host", "-v", f"{volume}:/srv/ingest", image,
           "pacifica-ingest", "-a", "127.0.0.1", "-p", "8066")
    url = "http://127.0.0.1:8066"
    try:
        _wait_http(url + "/", 90, "the standalone container")
        first = _upload_and_wait(url)
        docker("restart", "-t", "30", name)
        _wait_http(url + "/", 90, "the restarted container")
        again = requests.get(url + "/get_state", params={"job_id": first["job_id"]}, timeout=30).json()
        assert again == first
        second = _upload_and_wait(url)
        assert second["job_id"] != first["job_id"]
        archived = docker("exec", name, "python3", "-c",
                          "import hashlib, json, pathlib; print(json.dumps(sorted(hashlib.sha1(p.read_bytes())"
                          ".hexdigest() for p in pathlib.Path('/srv/ingest/archive').rglob('*') if p.is_file())))")
        expected = sorted(hashlib.sha1(data).hexdigest() for data in _example_files().values()) * 2
        assert json.loads(archived.stdout) == sorted(expected)

        def health():
            status = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
            return status if status in ("healthy", "unhealthy") else None

        assert wait_for(health, 90, "the container's health status", interval=1) == "healthy"
    finally:
        print(docker("logs", name, check=False).stdout[-3000:])
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)


def test_the_image_is_protected_until_it_is_opened(image):
    """The image listens on every address; a client elsewhere gets 403 until the container is
    opened explicitly (here INGEST_ALLOW_ANONYMOUS, as for a private network)."""
    from tests.support.netns import test_host

    port, name = "18094", "pacifica-ci-protected"
    with test_host() as remote:
        for opened, expected in ((None, 403), ("true", 404)):
            docker("rm", "-f", name, check=False)
            env = ["-e", f"INGEST_ALLOW_ANONYMOUS={opened}"] if opened else []
            docker("run", "-d", "--name", name, "--network", "host", *env, image, "pacifica-ingest", "-a", "0.0.0.0",
                   "-p", port)
            try:
                _wait_http(f"http://127.0.0.1:{port}/", 90, "the container")
                asked = remote.python(
                    "import urllib.request, urllib.error\n"
                    f"try: print(urllib.request.urlopen('http://{remote.host_address}:{port}/get_state?job_id=1',"
                    " timeout=10).status)\n"
                    "except urllib.error.HTTPError as error: print(error.code, error.read().decode())\n")
                assert asked.stdout.split()[0] == str(expected), (opened, asked.stdout, asked.stderr)
                if expected == 403:
                    assert "allow_anonymous" in asked.stdout
                    logs = docker("logs", name, check=False)
                    assert "protected mode" in logs.stdout + logs.stderr
            finally:
                docker("rm", "-f", name, check=False)


def compose(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*COMPOSE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def stack(engine):
    base = host_network_compose_file(engine / "docker-compose.yml")
    COMPOSE[:] = ["docker-compose", "-p", PROJECT, "--project-directory", str(ROOT), "-f", str(base),
                  "-f", str(OVERRIDE)]
    compose("down", "-v", "--remove-orphans", check=False)
    started = time.monotonic()
    try:
        compose("up", "-d", "--build", timeout=1200)
        _wait_http("http://127.0.0.1:8066/", 180, "ingest-web")
        _wait_http("http://127.0.0.1:8081/", 180, "cartd-web")
        yield time.monotonic() - started
    finally:
        logs = compose("logs", "--no-color", "--tail", "60", check=False).stdout
        print(logs[-20000:])
        compose("down", "-v", "--remove-orphans", timeout=300, check=False)


def _states() -> dict[str, str]:
    ids = compose("ps", "-q").stdout.split()
    states = {}
    for container in ids:
        name, status, code = docker("inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.ExitCode}}",
                                    container).stdout.split()
        states[name.strip("/").removeprefix(f"{PROJECT}_").rsplit("_", 1)[0]] = f"{status} {code}"
    return states


def test_the_stack_ingests_the_example_and_cartd_serves_it_back(stack):
    states = _states()
    for one_off in ("ingest-dbsync", "cartd-dbsync", "metadata-load"):
        assert states[one_off] == "exited 0", states
    # The web services' health checks are GET /ready: every peer, the database, broker and volume.
    for web in ("ingest-web", "cartd-web"):
        def healthy(name=f"{PROJECT}_{web}_1"):
            status = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
            return status if status in ("healthy", "unhealthy") else None

        assert wait_for(healthy, 120, f"{web}'s health check", interval=1) == "healthy", web
    ready = requests.get("http://127.0.0.1:8066/ready", timeout=30).json()
    assert set(ready["checks"]) == {"database", "broker", "volume", "uniqueid", "policy", "archiveinterface",
                                    "metadata"} and ready["status"] == "ready", ready
    final = _upload_and_wait("http://127.0.0.1:8066")
    job_id = final["job_id"]
    metadata = "http://127.0.0.1:8121"
    assert requests.get(f"{metadata}/transactions", params={"_id": job_id}, timeout=30).json()
    files = requests.get(f"{metadata}/files", params={"transaction": job_id}, timeout=30).json()
    # The metadata names a file by its path in the bundle without the leading "data/".
    example = {name.removeprefix("data/"): data for name, data in _example_files().items()}
    assert sorted(f"{row['subdir']}/{row['name']}" for row in files) == sorted(example)

    uid = f"example-{job_id}"
    fileids = [{"id": str(row["_id"]), "path": f"{row['subdir']}/{row['name']}", "hashtype": row["hashtype"],
                "hashsum": row["hashsum"]} for row in files]
    created = requests.post(f"http://127.0.0.1:8081/{uid}", json={"fileids": fileids}, timeout=30)
    assert created.status_code == 201, created.text

    def ready():
        head = requests.head(f"http://127.0.0.1:8081/{uid}", timeout=30)
        status = head.headers.get("X-Pacifica-Status")
        return head if status in ("ready", "error") else None

    head = wait_for(ready, 120, "the cart to be ready", interval=0.5)
    assert head.headers["X-Pacifica-Status"] == "ready", head.headers.get("X-Pacifica-Message")
    download = requests.get(f"http://127.0.0.1:8081/{uid}", params={"filename": "example.tar"}, timeout=60)
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        served = {info.name.removeprefix("example/"): tar.extractfile(info).read() for info in tar.getmembers()
                  if info.isfile() and "manifest" not in info.name}
    assert served == example


def test_docker_stop_stops_the_stack_at_once(stack):
    """uWSGI with --die-on-term stops on SIGTERM (without it, docker stop waits 10 s, then kills)."""
    started = time.monotonic()
    compose("stop", "-t", "30")
    took = time.monotonic() - started
    states = _states()
    assert all(state.startswith("exited") for state in states.values()), states
    web = docker("inspect", "-f", "{{.State.ExitCode}}", f"{PROJECT}_ingest-web_1").stdout.strip()
    assert web in ("0", "30"), f"ingest-web exited {web} (killed?) after {took:.1f} s"
    assert took < 30, f"docker-compose stop took {took:.1f} s"
    print(json.dumps({"compose_up_seconds": round(stack, 1), "compose_stop_seconds": round(took, 1)}))


def test_the_deployment_page_shows_these_commands():
    page = (ROOT / "docs" / "deployment.md").read_text()
    for command in ("docker build -t pacifica-ingest .", "docker-compose up", "docker compose up",
                    "metadata-load"):
        assert command in page, command
    assert Path(ROOT / ".dockerignore").exists()
