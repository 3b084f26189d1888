"""``pacifica-ingest-agent`` against the running service, as it runs on an instrument PC: a
separate process watching a directory, killed and restarted, its journal read with ``status``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shutil
import signal
import subprocess
import time
import types
from pathlib import Path

import pytest
import requests

from tests.conftest import make_stack, own_stack
from tests.support.metrics import scrape, value
from tests.support.procs import BIN, wait_for
from tests.support.proxy import TcpProxy

MB = 1024 * 1024
TRANSACTION = ["--submitter", "10", "--project", "1234a", "--instrument", "54"]


@pytest.fixture(scope="module", params=["embedded", "published"])
def service(request, tmp_path_factory, peers, archive):
    root = tmp_path_factory.mktemp(f"agent-{request.param}")
    with own_stack(f"agent-{request.param}", request.param, root, peers, archive) as stack:
        yield stack


def agent(stack, journal, *args: str, **popen) -> subprocess.Popen:
    """Start the agent (stdout and stderr to ``journal``.log)."""
    log = open(f"{journal}.log", "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen([str(BIN / "pacifica-ingest-agent"), "watch", "--url", stack.url, "--journal",
                             str(journal), *args], stdout=log, stderr=log, **popen)


def run_agent(stack, journal, *args: str, timeout: float = 300) -> None:
    process = agent(stack, journal, "--once", *args)
    assert process.wait(timeout) == 0, Path(f"{journal}.log").read_text(errors="replace")[-3000:]


def status(journal) -> dict:
    result = subprocess.run([str(BIN / "pacifica-ingest-agent"), "status", "--journal", str(journal), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def archived_files(stack, job_id: int) -> dict[str, dict]:
    answer = requests.get(stack.url + "/get_state", params={"job_id": job_id, "files": "true"}, timeout=30).json()
    return {item["path"]: item for item in answer["files"]}


def test_a_file_still_being_written_is_sent_only_once_quiet_and_whole(service, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    journal = tmp_path / "journal.sqlite3"
    process = agent(service, journal, str(watched), *TRANSACTION, "--quiet", "10s", "--sweep", "2s")
    try:
        time.sleep(1)
        digest = hashlib.sha1()
        last_write = 0.0
        with open(watched / "detector.raw", "wb") as out:
            for _ in range(200):  # 200 MB in 1 MB steps over 20 s
                block = os.urandom(MB)
                out.write(block)
                out.flush()
                digest.update(block)
                last_write = time.time()
                time.sleep(0.1)
        done = wait_for(lambda: [row for row in status(journal)["bundles"] if row["state"] == "complete"] or None,
                        180, "the bundle to complete")
        [bundle] = done
        [row] = status(journal)["bundles"]
        job = requests.get(service.url + "/get_state", params={"job_id": bundle["job_id"]}, timeout=30).json()
        # The job exists no earlier than the last write and the quiet period (the API's times are
        # whole seconds, UTC).
        created = time.mktime(time.strptime(job["created"], "%Y-%m-%d %H:%M:%S")) - time.timezone
        assert created >= int(last_write + 10) - 1, (created, last_write)
        assert row["files"] == 1 and row["bytes"] > 200 * MB
        [archived] = archived_files(service, bundle["job_id"]).values()
        assert (archived["path"], archived["hashsum"]) == ("data/detector.raw", digest.hexdigest())
        assert hashlib.sha1(service.archived(archived["file_id"]).read_bytes()).hexdigest() == digest.hexdigest()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_a_file_held_open_for_writing_waits_whatever_its_quiet(service, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    journal = tmp_path / "journal.sqlite3"
    process = agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s", "--sweep", "1s")
    try:
        with open(watched / "slow.raw", "wb") as out:
            out.write(b"frame 1\n")
            out.flush()
            time.sleep(5)  # a detector pausing longer than the quiet period, its file still open
            assert not journal.exists() or status(journal)["bundles"] == [], "a file open for writing was sent"
            out.write(b"frame 2\n")
        closed = time.time()
        [row] = wait_for(lambda: [row for row in status(journal)["bundles"] if row["state"] == "complete"] or None,
                         60, "the file, once closed")
        assert row["bundle"] and archived_files(service, row["job_id"])["data/slow.raw"]["size"] == 16
        assert time.time() - closed >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_killed_mid_upload_and_restarted_it_makes_exactly_one_job(service, tmp_path):
    watched = tmp_path / "watched"
    (watched / "run-7").mkdir(parents=True)
    with open(watched / "run-7" / "big.bin", "wb") as out:
        out.writelines(os.urandom(MB) for _ in range(1024))
    (watched / "run-7" / "small.txt").write_text("notes\n")
    journal = tmp_path / "journal.sqlite3"
    received_before = value(scrape(service.url), "pacifica_ingest_received_bytes_total", way="tus")
    jobs_before = service.cmd("jobs", "--limit", "1000").stdout.count("\n")
    process = agent(service, journal, str(watched), *TRANSACTION, "--per", "directory", "--quiet", "1s",
                    "--rate", "100MB/s", "--once")

    def halfway():
        rows = status(journal)["bundles"] if journal.exists() else []
        return rows[0] if rows and rows[0]["sent_bytes"] >= rows[0]["bytes"] // 2 else None

    bundle = wait_for(halfway, 120, "the upload to reach half way", interval=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert status(journal)["bundles"][0]["state"] == "sending"
    run_agent(service, journal, str(watched), *TRANSACTION, "--per", "directory", "--quiet", "1s")
    [row] = status(journal)["bundles"]
    assert row["state"] == "complete" and row["job_id"] == bundle["job_id"]
    assert service.cmd("jobs", "--limit", "1000").stdout.count("\n") == jobs_before + 1, "one job, not two"
    received = value(scrape(service.url), "pacifica_ingest_received_bytes_total", way="tus") - received_before
    assert row["bytes"] <= received <= row["bytes"] + 8 * MB, (received, row["bytes"])
    files = archived_files(service, row["job_id"])
    assert set(files) == {"data/run-7/big.bin", "data/run-7/small.txt"}


def test_parallel_streams_killed_and_restarted_make_one_job(service, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    data = os.urandom(90 * MB)
    (watched / "wide.bin").write_bytes(data)
    journal = tmp_path / "journal.sqlite3"
    received_before = value(scrape(service.url), "pacifica_ingest_received_bytes_total", way="tus")
    jobs_before = service.cmd("jobs", "--limit", "1000").stdout.count("\n")
    process = agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s", "--streams", "3",
                    "--rate", "30MB/s", "--once")

    def a_third():
        rows = status(journal)["bundles"] if journal.exists() else []
        return rows[0] if rows and rows[0]["sent_bytes"] >= rows[0]["bytes"] // 3 else None

    wait_for(a_third, 120, "a third of the streams' bytes", interval=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    run_agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s", "--streams", "3")
    [row] = status(journal)["bundles"]
    assert row["state"] == "complete"
    assert service.cmd("jobs", "--limit", "1000").stdout.count("\n") == jobs_before + 1, "one job, not two"
    received = value(scrape(service.url), "pacifica_ingest_received_bytes_total", way="tus") - received_before
    assert row["bytes"] <= received <= row["bytes"] + 3 * 8 * MB, (received, row["bytes"])
    [archived] = archived_files(service, row["job_id"]).values()
    assert archived["hashsum"] == hashlib.sha1(data).hexdigest()


def test_a_network_cut_mid_upload_is_resumed_and_a_rate_holds(service, tmp_path):
    """The agent reaches the service through a proxy that drops every connection while a bundle
    is on its way: it goes on from the offset the service holds, within its bandwidth cap."""
    proxy = TcpProxy("127.0.0.1", service.port).start()
    watched = tmp_path / "watched"
    watched.mkdir()
    data = os.urandom(24 * MB)
    (watched / "cut.bin").write_bytes(data)
    journal = tmp_path / "journal.sqlite3"
    jobs_before = service.cmd("jobs", "--limit", "1000").stdout.count("\n")
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "pacifica-ingest-agent"), "watch", "--url", proxy.url, "--journal",
                                str(journal), str(watched), *TRANSACTION, "--quiet", "0.5s", "--rate", "4MB/s",
                                "--sweep", "1s", "--once", "--timeout", "120s"],
                               stdout=subprocess.DEVNULL, stderr=open(f"{journal}.log", "ab"))  # noqa: SIM115
    try:
        wait_for(lambda: (journal.exists() and status(journal)["bundles"]
                 and status(journal)["bundles"][0]["sent_bytes"] >= 8 * MB) or None, 60, "8 MB on their way",
                 interval=0.05)
        # The agent reads a chunk (slowly, at its rate) and then sends it at once: the link drops
        # again and again until one drop meets a chunk on its way.
        log = Path(f"{journal}.log")
        deadline = time.monotonic() + 30
        while "the upload stopped" not in log.read_text(errors="replace") and time.monotonic() < deadline \
                and process.poll() is None:
            proxy.cut()
            time.sleep(0.002)
        assert process.wait(180) == 0, Path(f"{journal}.log").read_text(errors="replace")[-3000:]
    finally:
        proxy.stop()
    elapsed = time.monotonic() - started
    [row] = status(journal)["bundles"]
    assert row["state"] == "complete"
    assert service.cmd("jobs", "--limit", "1000").stdout.count("\n") == jobs_before + 1
    assert archived_files(service, row["job_id"])["data/cut.bin"]["hashsum"] == hashlib.sha1(data).hexdigest()
    assert elapsed >= 24 * MB / (4 * 10**6) * 0.9, f"24 MiB at 4 MB/s took only {elapsed:.1f} s"
    assert "the upload stopped" in Path(f"{journal}.log").read_text(errors="replace")


def test_pruning_only_once_the_service_holds_the_file_whole(service, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    journal = tmp_path / "journal.sqlite3"
    keep = watched / "keep.dat"
    keep.write_bytes(os.urandom(300_000))
    original = hashlib.sha1(keep.read_bytes()).hexdigest()
    run_agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s")
    [sent] = status(journal)["bundles"]
    assert sent["state"] == "complete" and keep.exists(), "nothing is deleted without --prune"

    # A file changed after it was sent is a new version: a new job; the archived copy stays.
    with open(keep, "ab") as out:
        out.write(b"appended later")
    changed = hashlib.sha1(keep.read_bytes()).hexdigest()
    run_agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s")
    first, second = status(journal)["bundles"]
    assert second["state"] == "complete" and second["job_id"] != first["job_id"]
    assert archived_files(service, first["job_id"])["data/keep.dat"]["hashsum"] == original
    assert archived_files(service, second["job_id"])["data/keep.dat"]["hashsum"] == changed

    # With the service unreachable (its requests go to a proxy that is not there), nothing is
    # deleted: the agent gives up, and says so.
    down = agent(service, journal, str(watched), *TRANSACTION, "--prune", "--once", "--timeout", "5s",
                 env={**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
                      "NO_PROXY": "", "no_proxy": ""})
    assert down.wait(60) == 1
    assert keep.exists()
    # With it back, the copy the service holds is checked against the file, and the file goes.
    run_agent(service, journal, str(watched), *TRANSACTION, "--prune", "--quiet", "1s")
    assert not keep.exists()
    assert {row["state"] for row in status(journal)["bundles"]} == {"pruned"}


def test_with_the_archive_down_nothing_is_pruned(peers, archive, tmp_path):
    """The service up, its archive interface (the published one, behind a proxy this test stops)
    not: the agent cannot learn that the archive holds the file, so it keeps it."""
    proxy = TcpProxy("127.0.0.1", archive.port).start()
    stack = make_stack("agent-archive-down", "postgres", "redis", tmp_path / "stack", peers,
                       types.SimpleNamespace(url=proxy.url))
    assert stack.cmd("dbsync").returncode == 0
    try:
        stack.start_server()
        stack.start_worker()
        watched = tmp_path / "watched"
        watched.mkdir()
        kept = watched / "kept.dat"
        kept.write_bytes(os.urandom(20_000))
        journal = tmp_path / "journal.sqlite3"
        run_agent(stack, journal, str(watched), *TRANSACTION, "--quiet", "1s")
        assert status(journal)["bundles"][0]["state"] == "complete"
        proxy.stop()
        down = agent(stack, journal, str(watched), *TRANSACTION, "--prune", "--once", "--timeout", "5s")
        assert down.wait(60) == 1
        assert kept.exists() and status(journal)["bundles"][0]["state"] == "complete"
        assert "archive could not be asked" in Path(f"{journal}.log").read_text()
    finally:
        stack.stop()
        proxy.stop()


def test_files_written_while_the_agent_was_stopped_and_seen_by_polling_are_sent(service, tmp_path):
    watched = tmp_path / "share"
    watched.mkdir()
    (watched / "while-stopped.dat").write_bytes(b"x" * 5000)
    journal = tmp_path / "journal.sqlite3"
    # No sweep but the first: only the polling observer can wake it for the second file.
    process = agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s", "--poll", "--sweep", "1h")
    try:
        wait_for(lambda: [row for row in status(journal)["bundles"] if row["state"] == "complete"] or None
                 if journal.exists() else None, 60, "the file written while the agent was stopped")
        (watched / "later.dat").write_bytes(b"y" * 7000)
        wait_for(lambda: len([row for row in status(journal)["bundles"] if row["state"] == "complete"]) == 2
                 or None, 60, "the file the polling observer saw")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    text = subprocess.run([str(BIN / "pacifica-ingest-agent"), "status", "--journal", str(journal)],
                          capture_output=True, text=True, timeout=60).stdout
    assert text.startswith("bundles: 2 complete") and "while-stopped.dat" in text and "later.dat" in text


@pytest.fixture
def share(tmp_path):
    """A directory where inotify sees nothing: a bindfs (FUSE) mount of another, written to from
    the other side, as a share's files are written by another machine."""
    source, mounted = tmp_path / "server-side", tmp_path / "share"
    source.mkdir()
    mounted.mkdir()
    bindfs = shutil.which("bindfs")
    assert bindfs, "bindfs is required (tools/test installs it): apt-get install bindfs"
    subprocess.run([bindfs, str(source), str(mounted)], check=True, timeout=30)
    try:
        yield source, mounted
    finally:
        subprocess.run(["fusermount", "-u", str(mounted)], timeout=30, check=False)


def test_a_share_that_inotify_cannot_see_is_watched_by_polling(service, share, tmp_path):
    source, mounted = share
    journal = tmp_path / "journal.sqlite3"
    # With inotify only (and no sweep but the first), a file written on the other side is not seen.
    blind = agent(service, journal, str(mounted), *TRANSACTION, "--quiet", "1s", "--sweep", "1h")
    try:
        time.sleep(2)
        (source / "from-the-instrument.dat").write_bytes(b"s" * 9000)
        time.sleep(6)
        assert not journal.exists() or status(journal)["bundles"] == [], "inotify saw into the share after all"
    finally:
        blind.send_signal(signal.SIGTERM)
        blind.wait(30)
    (source / "from-the-instrument.dat").unlink()
    polling = agent(service, journal, str(mounted), *TRANSACTION, "--quiet", "1s", "--sweep", "1h", "--poll")
    try:
        time.sleep(2)
        (source / "from-the-instrument.dat").write_bytes(b"s" * 9000)
        [row] = wait_for(lambda: [row for row in status(journal)["bundles"] if row["state"] == "complete"] or None
                         if journal.exists() else None, 60, "the polling watch to send the share's file")
        assert row["name"] == "from-the-instrument.dat"
    finally:
        polling.send_signal(signal.SIGTERM)
        polling.wait(30)


def test_in_a_terminal_it_shows_a_progress_bar(service, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "bar.dat").write_bytes(os.urandom(3 * MB))
    master, slave = pty.openpty()
    process = subprocess.Popen([str(BIN / "pacifica-ingest-agent"), "watch", "--url", service.url, "--journal",
                                str(tmp_path / "journal.sqlite3"), str(watched), *TRANSACTION, "--quiet", "1s",
                                "--once"], stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other side closed: the agent ended
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(60) == 0
    os.close(master)
    assert b"sending [" in output and b"of 3.1 MB" in output, output[-2000:]


def test_a_bundle_the_service_would_refuse_is_not_sent(service, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "orphan.dat").write_bytes(b"z" * 100)
    journal = tmp_path / "journal.sqlite3"
    jobs_before = service.cmd("jobs", "--limit", "1000").stdout
    # No instrument: /validate lists it, and nothing is uploaded.
    run_agent(service, journal, str(watched), "--submitter", "10", "--project", "1234a", "--quiet", "1s")
    [row] = status(journal)["bundles"]
    assert row["state"] == "failed" and "refused by /validate" in row["error"] and "instrument" in row["error"]
    assert service.cmd("jobs", "--limit", "1000").stdout == jobs_before



def test_with_a_token_the_jobs_and_files_are_the_agents_own(service, tmp_path):
    """Last in the module: once a token exists the service serves identities only."""
    created = service.cmd("token", "create", "--user", "beamline7", "--scope", "upload,read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    time.sleep(6)  # a running server notices the first token within 5 s
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "frame.tif").write_bytes(os.urandom(40_000))
    journal = tmp_path / "journal.sqlite3"
    process = agent(service, journal, str(watched), *TRANSACTION, "--quiet", "1s", "--once", "--prune",
                    env={**os.environ, "PACIFICA_INGEST_TOKEN": token})
    assert process.wait(120) == 0, Path(f"{journal}.log").read_text(errors="replace")[-3000:]
    [row] = status(journal)["bundles"]
    assert row["state"] == "pruned" and not (watched / "frame.tif").exists()
    mine = requests.get(service.url + "/get_state", params={"job_id": row["job_id"]}, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200
    other = service.cmd("token", "create", "--user", "someone-else", "--scope", "read").stdout.strip()
    theirs = requests.get(service.url + "/get_state", params={"job_id": row["job_id"], "files": "true"},
                          timeout=30, headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404, "another user learns nothing of the agent's files"
