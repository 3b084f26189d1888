"""Docker for the deployment tests: the engine, and the base images no registry here can serve.

The Dockerfile and docker-compose.yml name ``python:3.11-slim``, ``postgres:15``, ``rabbitmq:3``
and the four ``pacifica/*`` peers. No image registry is reachable from these machines, so each
is built here under the same tag: Debian bookworm from debootstrap (``docker import``), then
``tests/deployment/images/*`` on top. An image is rebuilt only when its inputs change (a label
holds their digest), so later runs find them all in Docker's store.

The engine runs with ``--bridge=none --iptables=false``: containers get the host's network only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "deployment" / "images"
LABEL = "org.pacifica-ingest.inputs"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN = "debian:bookworm-slim"
MIRROR = "http://deb.debian.org/debian"

# tag: (image directory, build arguments)
PEERS = {
    "pacifica/uniqueid:v0.5.1": {"PEER": "uniqueid",
                                 "REQUIREMENTS": "pacifica-uniqueid==0.5.1 peewee<4 psycopg2-binary pymysql"},
    "pacifica/metadata:v0.13.0": {"PEER": "metadata", "NO_DEPS": "pacifica-metadata==0.13.0",
                                  "REQUIREMENTS": "cherrypy peewee<4 pytz psycopg2-binary python-dateutil requests"},
    "pacifica/policy:v0.8.3": {"PEER": "policy", "REQUIREMENTS": "pacifica-policy==0.8.3"},
    "pacifica/archiveinterface:v0.4.2": {"PEER": "archiveinterface", "RUN_AS": "daemon",
                                         "REQUIREMENTS": "pacifica-archiveinterface==0.4.2"},
}


def docker_bin() -> str:
    """The Docker client that matches the engine (Debian's docker.io), else any on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise AssertionError("no docker client: install Debian's docker.io (apt-get install docker.io docker-compose)")


def docker(*args: str, timeout: float = 900, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``docker args...``; raise with its output if it fails and ``check``."""
    result = subprocess.run([docker_bin(), *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def ensure_engine(log: Path) -> None:
    """Use the running Docker engine, or start one with host networking only; fail loudly if
    neither works."""
    if docker("info", check=False, timeout=30).returncode == 0:
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(dockerd):
        raise AssertionError("Docker Engine is not installed: apt-get install docker.io docker-compose debootstrap")
    if os.geteuid() != 0:
        raise AssertionError("no Docker engine runs, and only root can start one")
    with open(log, "ab") as out:
        subprocess.Popen([dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false"], stdout=out,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while docker("info", check=False, timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd did not start:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:32]


def _current(tag: str, digest: str) -> bool:
    found = docker("image", "inspect", "-f", f'{{{{ index .Config.Labels "{LABEL}" }}}}', tag, check=False)
    return found.returncode == 0 and found.stdout.strip() == digest


def _image_id(tag: str) -> bytes:
    return docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip().encode()


def _build(tag: str, directory: str, args: dict[str, str] | None = None, extra: dict[str, Path] | None = None) -> None:
    """Build ``tests/deployment/images/<directory>`` as ``tag`` unless it is current."""
    source = IMAGES / directory
    args = args or {}
    extra = extra or {}
    inputs = [path.read_bytes() for path in sorted(source.iterdir())]
    inputs += [path.read_bytes() for path in extra.values()]
    inputs += [f"{key}={value}".encode() for key, value in sorted(args.items())]
    digest = _digest(_image_id("python:3.11-slim" if directory == "pacifica" else DEBIAN), *inputs)
    if _current(tag, digest):
        return
    with tempfile.TemporaryDirectory(prefix="pacifica-image-") as context:
        shutil.copytree(source, context, dirs_exist_ok=True)
        for name, path in extra.items():
            shutil.copy(path, Path(context) / name)
        build_args = [item for key, value in args.items() for item in ("--build-arg", f"{key}={value}")]
        docker("build", "--network", "host", "--label", f"{LABEL}={digest}", *build_args, "-t", tag, context,
               timeout=1800)


def _debian(work: Path) -> None:
    """Debian bookworm (minbase) from debootstrap, imported as ``debian:bookworm-slim``."""
    digest = _digest(b"debootstrap --variant=minbase bookworm", MIRROR.encode())
    if _current(DEBIAN, digest):
        return
    rootfs = work / "bookworm-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR], check=True,
                   capture_output=True, timeout=1200)
    try:
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([docker_bin(), "import", "--change", f"LABEL {LABEL}={digest}", "--change",
                        'CMD ["bash"]', "-", DEBIAN], stdin=tar.stdout, check=True, capture_output=True,
                       timeout=600)
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build_base_images(work: Path) -> None:
    """Every image the Dockerfile and docker-compose.yml name, built here under its tag."""
    if shutil.which("debootstrap") is None:
        raise AssertionError("debootstrap is not installed: apt-get install debootstrap")
    _debian(work)
    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(_build, "python:3.11-slim", "python", extra={"ca-certificates.crt": CA_BUNDLE}),
                pool.submit(_build, "postgres:15", "postgres"),
                pool.submit(_build, "rabbitmq:3", "rabbitmq")]
        for job in jobs:
            job.result()
    with ThreadPoolExecutor(2) as pool:
        for job in [pool.submit(_build, tag, "pacifica", args) for tag, args in PEERS.items()]:
            job.result()
