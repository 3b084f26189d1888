"""The shipped nginx example (examples/nginx/pacifica-ingest.conf) in front of the service, as it is
with its paths and ports replaced: TLS, HTTP Basic users, the identity header set by the proxy
alone, and the service believing it from the proxy only."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.bundles import make_bundle
from tests.support.procs import free_port, wait_for

EXAMPLE = Path(__file__).parents[2] / "examples" / "nginx" / "pacifica-ingest.conf"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def nginx(tmp_path):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is required (tools/test installs Debian's nginx)"
    started = []

    def start(upstream_port: int) -> tuple[str, Path]:
        root = tmp_path / "nginx"
        (root / "logs").mkdir(parents=True)
        cert, key = _certificate(root)
        users = root / "htpasswd"
        users.write_text("".join(f"{user}:{{SHA}}{base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()}\n"
                                 for user, password in (("alice", "alice-pw"), ("bob", "bob-pw"))))
        port = free_port()
        site = EXAMPLE.read_text()
        site = site.replace("server 127.0.0.1:8066;", f"server 127.0.0.1:{upstream_port};")
        site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        site = re.sub(r"ssl_certificate /\S+;", f"ssl_certificate {cert};", site)
        site = re.sub(r"ssl_certificate_key /\S+;", f"ssl_certificate_key {key};", site)
        site = site.replace("/etc/nginx/pacifica-ingest.htpasswd", str(users))
        (root / "site.conf").write_text(site)
        (root / "nginx.conf").write_text(
            f"user root;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log info;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{ access_log {root}/logs/access.log; client_body_temp_path {root}/body;\n"
            f"proxy_temp_path {root}/proxy; include {root}/site.conf; }}\n")
        process = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(process)
        url = f"https://localhost:{port}"
        wait_for(lambda: _up(url, cert), 30, "nginx")
        return url, cert

    yield start
    for process in started:
        process.terminate()
        process.wait(30)


def _up(url: str, cert: Path) -> bool:
    try:
        requests.get(url + "/health", verify=str(cert), timeout=2)
    except requests.RequestException:
        return False
    return True


def test_the_nginx_example_names_the_user_and_nobody_else_can(ingest, nginx, tmp_path):
    stack = ingest("proxied", trusted_proxies="127.0.0.1", default_user="")
    url, cert = nginx(stack.port)
    alice, bob = ("alice", "alice-pw"), ("bob", "bob-pw")
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.bin": b"p" * 3_000_000})
    assert requests.get(url + "/get_state", params={"job_id": 1}, verify=str(cert), timeout=10).status_code == 401
    # Alice claims to be bob in the header: nginx replaces it.
    sent = requests.post(url + "/upload", data=path.read_bytes(), auth=alice, verify=str(cert), timeout=60,
                         headers={"X-Http-Authed-User": "bob"})
    assert sent.status_code == 200, sent.text
    job_id = sent.json()["job_id"]

    def done():
        state = requests.get(url + "/get_state", params={"job_id": job_id}, auth=alice, verify=str(cert),
                             timeout=10).json()
        return state if state.get("complete") else None

    assert wait_for(done, 60, "the job")["state"] == "OK"
    page = requests.get(f"{url}/jobs/{job_id}", auth=alice, verify=str(cert), timeout=10)
    assert "user alice" in page.text
    assert requests.get(url + "/get_state", params={"job_id": job_id}, auth=bob, verify=str(cert),
                        timeout=10).status_code == 404
    assert requests.get(url + "/get_state", params={"job_id": job_id}, auth=("alice", "wrong"), verify=str(cert),
                        timeout=10).status_code == 401
    # A client that sends no headers is dropped by nginx after client_header_timeout.
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /get_state?job_id=1 HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        closed = tls.recv(1024)
        assert closed == b"" or closed.startswith(b"HTTP/1.1 408"), closed
        assert time.monotonic() - started < 15
