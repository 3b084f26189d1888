"""Cartd's /metrics (carts by status, bytes staged and served, archive requests), /health and /ready."""

from __future__ import annotations

import hashlib
import os

import requests

from pacifica.ingest.peers.local_archive import LocalArchive
from tests.support.metrics import scrape, value
from tests.support.procs import BIN, Proc, free_port, wait_for


def test_cartd_counts_what_it_staged_and_served(tmp_path):
    archive = LocalArchive(str(tmp_path / "archive"))
    files = {201: os.urandom(70_000), 202: os.urandom(1234)}
    for file_id, data in files.items():
        archive.put(file_id, [data], len(data), 1_500_000_000)
    archive.make_durable(files)
    (tmp_path / "empty.ini").write_text("")
    env = {"CARTD_CONFIG": str(tmp_path / "empty.ini"), "CARTD_CPCONFIG": str(tmp_path / "none.ini"),
           "CARTD_DATA_DIR": str(tmp_path / "cartd"), "ARCHIVE_INTERFACE_URL": f"file://{tmp_path / 'archive'}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Proc("cartd-ops", [str(BIN / "pacifica-cartd"), "-p", str(port)], tmp_path / "cartd.log", env=env).start()
    try:
        server.wait_http(url + "/", 60)
        assert requests.get(url + "/health", timeout=10).json() == {"status": "ok"}
        ready = requests.get(url + "/ready", timeout=30)
        assert ready.status_code == 200 and set(ready.json()["checks"]) == {"database", "broker", "volume",
                                                                            "archiveinterface"}, ready.text
        request = {"fileids": [{"id": str(file_id), "path": f"x/{file_id}.bin", "hashtype": "sha1",
                                "hashsum": hashlib.sha1(data).hexdigest()} for file_id, data in files.items()]}
        assert requests.post(f"{url}/ops", json=request, timeout=30).status_code == 201

        def made():
            return requests.head(f"{url}/ops", timeout=10).headers.get("X-Pacifica-Status") == "ready"

        wait_for(made, 60, "the cart")
        body = requests.get(f"{url}/ops", timeout=30).content
        samples = scrape(url)
        assert value(samples, "pacifica_cartd_carts", status="ready") == 1
        assert value(samples, "pacifica_cartd_staged_files_total", media="disk") == 2
        assert value(samples, "pacifica_cartd_staged_bytes_total", media="disk") == sum(map(len, files.values()))
        assert value(samples, "pacifica_cartd_served_bytes_total", tar="streamed") == len(body) > 0
        assert value(samples, "pacifica_cartd_volume_free_bytes") > 0
    finally:
        server.stop()
