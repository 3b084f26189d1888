"""Cartd at the edge: owners of carts, safe download names, control characters refused at the
door, failed carts that say so, and the same protected mode as ingest."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time

import pytest
import requests

from pacifica.ingest.peers.local_archive import LocalArchive
from tests.security.conftest import bearer
from tests.security.test_protected_mode import remote_get
from tests.support.procs import BIN, Proc, free_port, run, wait_for


@pytest.fixture
def cartd(tmp_path):
    """Embedded cartd on the embedded ingest archive of ``tmp_path/ingest`` holding files 101, 102."""
    archive = LocalArchive(str(tmp_path / "ingest" / "archive"))
    files = {}
    for file_id in (101, 102):
        files[file_id] = os.urandom(5000 + file_id)
        archive.put(file_id, [files[file_id]], len(files[file_id]), 1_500_000_000)
    archive.make_durable(files)
    (tmp_path / "cart.ini").write_text("")
    env = {"CARTD_CONFIG": str(tmp_path / "cart.ini"), "CARTD_CPCONFIG": str(tmp_path / "none.ini"),
           "CARTD_DATA_DIR": str(tmp_path / "cartd"), "INGEST_DATA_DIR": str(tmp_path / "ingest")}
    started = []

    def start(address: str = "127.0.0.1") -> tuple[str, Proc, dict]:
        port = free_port()
        server = Proc("cartd-sec", [str(BIN / "pacifica-cartd"), "-p", str(port), "-a", address],
                      tmp_path / "cartd.log", env=env).start()
        started.append(server)
        server.wait_http(f"http://127.0.0.1:{port}/", 60)
        return f"http://127.0.0.1:{port}", server, env

    yield start, files
    for server in started:
        server.stop()


def _request(files: dict[int, bytes], *ids: int) -> dict:
    return {"fileids": [{"id": str(file_id), "path": f"d/{file_id}.bin", "hashtype": "sha1",
                         "hashsum": hashlib.sha1(files.get(file_id, b"")).hexdigest()} for file_id in ids]}


def _status(url: str, uid: str, headers: dict | None = None) -> str:
    def settled():
        status = requests.head(f"{url}/{uid}", headers=headers, timeout=10).headers.get("X-Pacifica-Status")
        return status if status in ("ready", "error") else None

    return wait_for(settled, 60, f"cart {uid}", interval=0.1)


def _token(env: dict, user: str) -> str:
    made = run([str(BIN / "pacifica-cartd-cmd"), "token", "create", "--user", user], env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_download_names_are_safe_and_rfc_6266(cartd):
    start, files = cartd
    url, _server, _env = start()
    assert requests.post(f"{url}/names", json=_request(files, 101), timeout=10).status_code == 201
    assert _status(url, "names") == "ready"
    for asked in ("..", ".", "../../etc", "a/../..", "..\\..", "\x00x", ""):
        answer = requests.get(f"{url}/names", params={"filename": asked}, timeout=30)
        assert answer.status_code == 200, asked
        disposition = answer.headers["Content-Disposition"]
        assert '".."' not in disposition and '"."' not in disposition and "/" not in disposition, disposition
        with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
            names = tar.getnames()
        assert names and all(not name.startswith(("../", "/", "./")) and ".." not in name.split("/")
                             for name in names), (asked, names)
    answer = requests.get(f"{url}/names", params={"filename": "Messung-µ-Ø.tar"}, timeout=30)
    disposition = answer.headers["Content-Disposition"]
    assert "filename*=UTF-8''Messung-%C2%B5-%C3%98.tar" in disposition, disposition
    assert 'filename="Messung-_-_.tar"' in disposition and "=?" not in disposition


def test_control_characters_are_refused_at_the_door_and_failed_carts_say_so(cartd):
    start, files = cartd
    url, _server, _env = start()
    for body in ({"fileids": [{"id": "10\x001", "path": "d/a", "hashtype": "sha1", "hashsum": ""}]},
                 {"fileids": [{"id": "101", "path": "d/\x00a", "hashtype": "sha1", "hashsum": ""}]},
                 {"fileids": [{"id": "101", "path": "d/a\nb", "hashtype": "sha1", "hashsum": ""}]}):
        answer = requests.post(f"{url}/ctl", data=json.dumps(body), timeout=10)
        assert answer.status_code == 400 and "control characters" in answer.json()["message"], answer.text
    assert requests.post(f"{url}/a%00b", json=_request(files, 101), timeout=10).status_code == 400
    assert requests.post(f"{url}/deep", data="[" * 100_000 + "]" * 100_000, timeout=30).status_code == 400
    assert requests.head(f"{url}/ctl", timeout=10).status_code == 404, "a refused cart was made"
    assert requests.post(f"{url}/broken", json=_request(files, 101, 999), timeout=10).status_code == 201
    assert _status(url, "broken") == "error"
    head = requests.head(f"{url}/broken", timeout=10)
    assert "999" in head.headers["X-Pacifica-Message"]
    got = requests.get(f"{url}/broken", timeout=10)
    assert got.status_code == 424 and "999" in got.json()["message"], (got.status_code, got.text)
    for text in (head.headers["X-Pacifica-Message"], got.text):
        assert "/ingest/archive" not in text and "/cartd" not in text, text


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def test_a_large_cart_request_is_read_one_file_at_a_time(cartd):
    """A 33 MB request of 250,000 files whose last path repeats the first: 400 naming it, no cart,
    and the server grew by less than the body (held as objects, the request cost it 4 times)."""
    start, _files = cartd
    url, server, _env = start()
    items = [{"id": str(number), "path": f"run/{number}.dat", "hashtype": "sha1", "hashsum": "0" * 40}
             for number in range(250_000)]
    items.append(dict(items[0], id="250000"))
    body = json.dumps({"fileids": items, "bundle": True}).encode()
    del items
    before = _peak_rss_mib(server.popen.pid)
    answer = requests.post(f"{url}/large", data=body, timeout=300)
    assert answer.status_code == 400 and "path 'run/0.dat' is given twice" in answer.json()["message"], answer.text
    grown = _peak_rss_mib(server.popen.pid) - before
    assert grown < len(body) / 2**20, f"{grown:.0f} MiB for a {len(body) / 2**20:.0f} MiB request"
    assert requests.head(f"{url}/large", timeout=10).status_code == 404, "a refused cart was made"
    for shape in ({"fileids": []}, {"fileids": {"a": 1}}, [], {"fileids": [{"id": "1"}], "bundle": "yes"}):
        refused = requests.post(f"{url}/shape", data=json.dumps(shape), timeout=10)
        assert refused.status_code == 400, (shape, refused.text)
    assert requests.head(f"{url}/shape", timeout=10).status_code == 404


def test_cartd_is_protected_like_ingest(cartd, remote):
    start, _files = cartd
    url, server, _env = start("0.0.0.0")
    assert "protected mode" in server.log()
    port = url.rsplit(":", 1)[1]
    status, body, *_ = remote_get(remote, f"http://{remote.host_address}:{port}/anything")
    assert status == 403 and "[cartd] trusted_proxies" in json.loads(body)["message"]


def _owned_files(stack, tmp_path, user: str, data: bytes) -> dict:
    """A cart request for the file of a job ``user`` ingests into the embedded stack."""
    from tests.security.conftest import make_token
    from tests.support.bundles import make_bundle

    headers = bearer(make_token(stack, user))
    time.sleep(6)  # the server looks for tokens at most every 5 s
    bundle = tmp_path / f"{user}.tar"
    make_bundle(str(bundle), {f"data/{user}.txt": data})
    job_id = requests.post(stack.url + "/upload", data=bundle.read_bytes(), headers=headers,
                           timeout=30).json()["job_id"]
    stack.headers = headers
    assert stack.wait_complete(job_id)["state"] == "OK"
    [archived] = stack.files(job_id)
    return {"fileids": [{"id": str(archived["_id"]), "path": f"{user}.txt", "hashtype": "sha1",
                         "hashsum": hashlib.sha1(data).hexdigest()}]}


def test_carts_belong_to_their_makers_and_hold_only_their_own_files(tmp_path, ingest):
    """With identities configured, a cart is its maker's, and holds the files of the user's own
    ingest jobs only (the embedded stack: cartd reads the embedded ingest's records)."""
    stack = ingest("owned")
    alices, bobs = (_owned_files(stack, tmp_path, "alice", b"alice's measurement\n"),
                    _owned_files(stack, tmp_path, "bob", b"bob's measurement\n"))
    (tmp_path / "none.ini").write_text("")
    env = {"CARTD_CONFIG": str(tmp_path / "none.ini"), "CARTD_CPCONFIG": str(tmp_path / "none.ini"),
           "CARTD_DATA_DIR": str(tmp_path / "cartd-owned"), "INGEST_DATA_DIR": str(stack.data_dir)}
    alice, bob = bearer(_token(env, "alice")), bearer(_token(env, "bob"))
    port = free_port()
    server = Proc("cartd-owned", [str(BIN / "pacifica-cartd"), "-p", str(port)], tmp_path / "cartd-owned.log",
                  env=env).start()
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(url + "/", 60)
        time.sleep(6)
        refused = requests.post(f"{url}/theirs", json=alices, headers=bob, timeout=10)
        assert refused.status_code == 404 and alices["fileids"][0]["id"] in refused.json()["message"], refused.text
        unknown = {"fileids": [dict(alices["fileids"][0], id="999999")]}
        assert requests.post(f"{url}/nothing", json=unknown, headers=alice, timeout=10).status_code == 404
        assert requests.post(f"{url}/mine", json=alices, headers=alice, timeout=10).status_code == 201
        assert _status(url, "mine", alice) == "ready"
        for method in ("HEAD", "GET", "DELETE"):
            assert requests.request(method, f"{url}/mine", headers=bob, timeout=10).status_code == 404, method
        assert requests.post(f"{url}/mine?retry=true", headers=bob, timeout=10).status_code == 404
        # Bob's cart of the same name is his own, of his own file; Alice's is untouched.
        assert requests.post(f"{url}/mine", json=bobs, headers=bob, timeout=10).status_code == 201
        assert _status(url, "mine", bob) == "ready"
        for headers, name, data in ((alice, "alice.txt", b"alice's measurement\n"),
                                    (bob, "bob.txt", b"bob's measurement\n")):
            body = requests.get(f"{url}/mine", headers=headers, timeout=30).content
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                member = next(item for item in tar.getnames() if item.endswith(name))
                assert tar.extractfile(member).read() == data
        assert requests.delete(f"{url}/mine", headers=alice, timeout=10).status_code == 200
        assert requests.head(f"{url}/mine", headers=bob, timeout=10).headers["X-Pacifica-Status"] == "ready"
    finally:
        server.stop()


def test_cartd_takes_oidc_tokens_too(tmp_path):
    from tests.support.oidc_issuer import Issuer

    issuer = Issuer()
    issuer.add_key("k1", "ES256")
    (tmp_path / "none.ini").write_text("")
    env = {"CARTD_CONFIG": str(tmp_path / "none.ini"), "CARTD_CPCONFIG": str(tmp_path / "none.ini"),
           "CARTD_DATA_DIR": str(tmp_path / "cartd"), "INGEST_DATA_DIR": str(tmp_path / "ingest"),
           "CARTD_AUTH_ISSUER": issuer.url, "CARTD_AUTH_AUDIENCE": "cartd"}
    port = free_port()
    server = Proc("cartd-oidc", [str(BIN / "pacifica-cartd"), "-p", str(port)], tmp_path / "cartd.log", env=env).start()
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_http(url + "/", 60)
        good = requests.head(f"{url}/nothing", headers=bearer(issuer.token("k1", audience="cartd")), timeout=10)
        assert good.status_code == 404
        for token in (issuer.token("k1", audience="ingest"), issuer.token("k1", audience="cartd", lifetime=-100)):
            refused = requests.head(f"{url}/nothing", headers=bearer(token), timeout=10)
            assert refused.status_code == 401 and "invalid_token" in refused.headers["WWW-Authenticate"]
    finally:
        server.stop()
        issuer.close()
