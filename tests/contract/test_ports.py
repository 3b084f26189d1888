"""One contract per peer port, run against every implementation so that they cannot drift.

The embedded implementations run on each database; the HTTP clients talk to the published
archive interface and to the HTTP test peers over loopback; the in-memory adapters the
pipeline's unit tests use (``peers.memory``) are held to the same contract. What an adapter
declares it can do (``peers.base``) is checked here too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading

import pytest
import requests

from pacifica.core.http import make_session
from pacifica.ingest.common.errors import IntegrityError, PeerError, PeerRejected
from pacifica.ingest.db import migrations
from pacifica.ingest.peers.archive import HttpArchive
from pacifica.ingest.peers.local_archive import LocalArchive
from pacifica.ingest.peers.memory import MemoryArchive, MemoryMetadata, MemoryPolicy, MemoryUniqueId
from pacifica.ingest.peers.metadata import EmbeddedMetadata, HttpMetadata
from pacifica.ingest.peers.policy import EmbeddedPolicy, HttpPolicy
from pacifica.ingest.peers.uniqueid import EmbeddedUniqueId, HttpUniqueId
from tests.conftest import ENGINES, bound_database
from tests.support.archive import archive_listing
from tests.support.bundles import file_object, transaction_metadata


@pytest.fixture(scope="module")
def session():
    return make_session(timeout=10, retries=1)


IMPLEMENTATIONS = [*(f"embedded-{engine}" for engine in ENGINES), "http"]


def _embedded(request, tmp_path) -> bool:
    if not request.param.startswith("embedded"):
        return False
    _bind(request, request.param.split("-", 1)[1], tmp_path)
    return True


def _bind(request, kind: str, tmp_path) -> None:
    stack = contextlib.ExitStack()
    db = stack.enter_context(bound_database(kind, tmp_path))
    migrations.upgrade(db)
    request.addfinalizer(stack.close)


# ---- uniqueid ---------------------------------------------------------------------------------

@pytest.fixture(params=[*IMPLEMENTATIONS, "memory"])
def uniqueid(request, session, peers, tmp_path):
    if request.param == "memory":
        return MemoryUniqueId()
    if _embedded(request, tmp_path):
        return EmbeddedUniqueId()
    # The HTTP client keeps the end of the highest range it was given in the service's database.
    _bind(request, ENGINES[0], tmp_path)
    return HttpUniqueId(peers.uniqueid.url, session)


def test_uniqueid_ranges_are_disjoint_and_per_mode(uniqueid):
    first = uniqueid.reserve(5, "contract_a")
    second = uniqueid.reserve(3, "contract_a")
    assert second >= first + 5
    other = uniqueid.reserve(1, "contract_b")
    assert isinstance(other, int) and other >= 1
    assert uniqueid.reserve(1, "contract_a") >= second + 3


def test_uniqueid_concurrent_reservations_never_overlap(uniqueid):
    ranges, errors = [], []

    def reserve():
        try:
            for _ in range(10):
                start = uniqueid.reserve(4, "contract_concurrent")
                ranges.append(range(start, start + 4))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    ids = [i for r in ranges for i in r]
    assert len(ids) == len(set(ids)) == 160


def test_uniqueid_refuses_an_empty_range(uniqueid):
    with pytest.raises(PeerRejected):
        uniqueid.reserve(0, "contract_a")


def test_embedded_job_ids_start_after_existing_jobs(tmp_path):
    from pacifica.ingest.compat.orm import update_state

    with bound_database("sqlite", tmp_path) as db:
        migrations.upgrade(db)
        update_state(4100, "OK", "ingest metadata", 100)
        assert EmbeddedUniqueId().reserve(1, "upload_job") == 4101


# ---- policy -----------------------------------------------------------------------------------

@pytest.fixture(params=["embedded", "http", "memory"])
def policy(request, session, peers):
    if request.param == "embedded":
        return EmbeddedPolicy()
    if request.param == "memory":
        return MemoryPolicy()
    return HttpPolicy(peers.policy.url + "/ingest", "X-Http-Authed-User", session)


def test_policy_accepts_a_complete_document(policy):
    policy.check_ingest(transaction_metadata("1234a") + [file_object("data/a", "x.txt", b"x")], "alice")


@pytest.mark.parametrize("document", [
    [{"destinationTable": "Transactions.submitter", "value": 1}],
    {"destinationTable": "Transactions.project", "value": "1234"},
    [1, 2, 3],
])
def test_policy_refuses_a_document_without_a_project(policy, document):
    with pytest.raises(PeerRejected):
        policy.check_ingest(document, "alice")


def test_embedded_policy_names_every_structural_problem():
    document = [{"destinationTable": "Transactions.project", "value": ""},
                {"destinationTable": "Files", "name": "x"}]
    with pytest.raises(PeerRejected) as caught:
        EmbeddedPolicy().check_ingest(document, "anyone")
    message = str(caught.value)
    for fragment in ("Transactions.submitter is missing", "Transactions.instrument is missing",
                     "Transactions.project has no value", "missing or non-string subdir"):
        assert fragment in message


# ---- archive ----------------------------------------------------------------------------------

class ArchiveUnderTest:
    def __init__(self, port, read):
        self.port = port
        self.read = read


@pytest.fixture(params=["local", "http", "memory"])
def archive_port(request, session, tmp_path, archive):
    if request.param == "memory":
        held = MemoryArchive()
        return ArchiveUnderTest(held, held.files.get)
    if request.param == "local":
        local = LocalArchive(str(tmp_path / "archive"))

        def read_local(file_id):
            path = local.path(file_id)
            return open(path, "rb").read() if os.path.exists(path) else None

        return ArchiveUnderTest(local, read_local)

    def read_http(file_id):
        response = requests.get(f"{archive.url}/{file_id}", timeout=10)
        return response.content if response.status_code == 200 else None

    return ArchiveUnderTest(HttpArchive(archive.url, session), read_http)


def _ids(request):
    base = 7_000_000 + (abs(hash(request.node.nodeid)) % 100_000) * 10
    return base, base + 1


def test_an_archive_sends_back_what_it_holds_and_says_where(archive_port, request):
    """What a fixity audit reads: the bytes (in blocks of at most the size asked), the media, and
    a clear refusal for a file it does not hold."""
    file_id, missing = _ids(request)
    data = os.urandom(200_000)
    port = archive_port.port
    port.put(file_id, [data], len(data), 1_600_000_000)
    blocks = list(port.read(file_id, 65_536))
    assert b"".join(blocks) == data and max(len(block) for block in blocks) <= 65_536
    assert port.media(file_id) in ("disk", "memory") and port.recall(file_id, 1) is True
    assert port.media(missing) is None
    with pytest.raises(PeerRejected):
        list(port.read(missing, 65_536))
    port.delete(file_id)


def test_archive_stores_exactly_the_bytes(archive_port, request):
    file_id, _ = _ids(request)
    data = os.urandom(300_000)
    archive_port.port.put(file_id, [data[:100_000], data[100_000:]], len(data), 1_600_000_000)
    assert archive_port.read(file_id) == data
    archive_port.port.put(file_id, [b"replaced"], 8, 1_600_000_000)
    assert archive_port.read(file_id) == b"replaced"
    archive_port.port.delete(file_id)
    assert archive_port.read(file_id) is None
    archive_port.port.delete(file_id)  # already gone: fine


def test_archive_moves_a_source_file(archive_port, request, tmp_path):
    file_id, missing_id = _ids(request)
    source = tmp_path / "to-move.dat"
    source.write_bytes(b"moved bytes")
    archive_port.port.patch(file_id, str(source))
    assert archive_port.read(file_id) == b"moved bytes"
    assert not source.exists()
    with pytest.raises(PeerError):
        archive_port.port.patch(missing_id, str(tmp_path / "never-existed.dat"))
    archive_port.port.delete(file_id)


# ---- metadata ---------------------------------------------------------------------------------

class MetadataUnderTest:
    def __init__(self, port, stored):
        self.port = port
        self.stored = stored


@pytest.fixture(params=[*IMPLEMENTATIONS, "memory"])
def metadata_port(request, session, peers, tmp_path):
    if request.param == "memory":
        kept = MemoryMetadata()
        return MetadataUnderTest(kept, lambda job_id: _summary(kept.get(job_id)))
    if _embedded(request, tmp_path):
        store = EmbeddedMetadata()
        return MetadataUnderTest(store, lambda job_id: _summary(store.get(job_id)))
    return MetadataUnderTest(HttpMetadata(peers.metadata.url + "/ingest", session),
                             lambda job_id: _summary(peers.published.document(job_id)))


def _summary(document):
    """What both implementations keep of a document: the transaction id and each file's identity."""
    if document is None:
        return None
    files = sorted((item["_id"], item["name"], item["subdir"], item["hashsum"], int(item["size"]))
                   for item in document if item.get("destinationTable") == "Files")
    job_ids = [item["value"] for item in document if item.get("destinationTable") == "Transactions._id"]
    return job_ids, files


def _document(job_id, mimetype="text/plain"):
    item = file_object("a", "x.txt", b"x", mimetype=mimetype) | {"_id": job_id * 10}
    return [*transaction_metadata(), item, {"destinationTable": "Transactions._id", "value": job_id}]


def test_metadata_keeps_what_it_accepts(metadata_port):
    document = _document(8_100_001)
    metadata_port.port.ingest(document)
    assert metadata_port.stored(8_100_001) == _summary(document)


def test_metadata_refuses_a_malformed_mimetype(metadata_port):
    # The published metadata service refuses it with HTTP 500 "ValueError: Invalid metadata for file N".
    with pytest.raises(PeerRejected, match=r"mimetype|Invalid metadata for file"):
        metadata_port.port.ingest(_document(8_100_002, mimetype="not a mimetype"))
    assert metadata_port.stored(8_100_002) is None


class ForgetfulArchiveApp:
    """An archive interface that acknowledges every PUT (201, total_bytes echoed) and stores nothing."""

    def handle(self, method, path, query, headers, body):
        if method == "PUT":
            return 201, {"message": "File added to archive", "total_bytes": len(body)}
        if method == "HEAD":
            return 200, {}, {"X-Pacifica-File": f"/srv{path}", "X-Content-Length": "0"}
        return 404, {"message": "no such file"}


def test_http_archive_does_not_trust_an_acknowledgement(session):
    from pacifica.ingest.common.errors import PeerUnavailable
    from tests.support.peers import PeerServer

    server = PeerServer(ForgetfulArchiveApp()).start()
    try:
        with pytest.raises(PeerUnavailable, match="not the 5 bytes sent"):
            HttpArchive(server.url, session).put(42, [b"hello"], 5, 0)
    finally:
        server.stop()


def test_archive_keeps_files_made_durable(archive_port, request):
    first, second = _ids(request)
    for file_id in (first, second):
        archive_port.port.put(file_id, [b"durable ", str(file_id).encode()], 8 + len(str(file_id)), 1_600_000_000)
    archive_port.port.make_durable([first, second])
    assert archive_port.read(first) == f"durable {first}".encode()
    assert archive_port.read(second) == f"durable {second}".encode()
    for file_id in (first, second):
        archive_port.port.delete(file_id)


def test_local_archive_copies_a_range_and_checks_it_before_it_is_visible(tmp_path):
    local = LocalArchive(str(tmp_path / "archive"))
    source = tmp_path / "bundle"
    source.write_bytes(b"header" + b"payload" * 1000 + b"trailer")
    with open(source, "rb") as handle:
        local.put_range(1, handle.fileno(), 6, 7000, 1_600_000_000)

        def refuse():
            assert not os.path.exists(local.path(2)), "the file was visible before its check"
            raise IntegrityError("hash differs")

        with pytest.raises(IntegrityError):
            local.put_range(2, handle.fileno(), 6, 7000, 1_600_000_000, check=refuse)
        with pytest.raises(PeerRejected, match="received 7007 of 9000"):
            local.put_range(3, handle.fileno(), 6, 9000, 1_600_000_000)
    assert (tmp_path / "archive" / "1").read_bytes() == b"payload" * 1000
    assert os.stat(local.path(1)).st_mtime == 1_600_000_000
    assert archive_listing(tmp_path / "archive") == ["1"]
    local.make_durable(range(1, 40))  # more files than are synced one by one: the filesystem is synced


def test_local_archive_sweeps_the_leftovers_of_dead_writers(tmp_path):
    local = LocalArchive(str(tmp_path / "archive"))
    beyond_pid_max = 2**22 + 17  # no process can have this pid
    incoming = tmp_path / "archive" / LocalArchive.INCOMING
    incoming.mkdir(parents=True)
    (incoming / f"5-{beyond_pid_max}-abc").write_bytes(b"partial")
    (incoming / f"6-{os.getpid()}-def").write_bytes(b"still being written")
    local.put(7, [b"x"], 1, 1_600_000_000)
    assert sorted(os.listdir(incoming)) == [f"6-{os.getpid()}-def"]


# ---- what each adapter declares it can do -------------------------------------------------------

def test_an_archive_does_what_it_declares(archive_port, request, tmp_path):
    port = archive_port.port
    assert isinstance(port.max_concurrency, int) and port.max_concurrency >= 1
    assert hasattr(port, "put_range") is port.copies_ranges
    if port.copies_ranges:
        file_id, _ = _ids(request)
        source = tmp_path / "bundle"
        source.write_bytes(b"head" + b"range" * 100 + b"tail")
        with open(source, "rb") as handle:
            port.put_range(file_id, handle.fileno(), 4, 500, 1_600_000_000)
        assert archive_port.read(file_id) == b"range" * 100
        port.delete(file_id)
    assert hasattr(port, "adopt") is port.adopts_files
    if port.adopts_files:
        file_id, _ = _ids(request)
        staged = tmp_path / "staged"
        staged.write_bytes(b"staged" * 100)
        assert port.can_adopt(str(tmp_path))
        port.adopt(file_id, str(staged), 600, 1_600_000_000)
        assert archive_port.read(file_id) == b"staged" * 100
        assert staged.read_bytes() == b"staged" * 100, "adopting a file changed it"
        port.delete(file_id)


def test_a_metadata_store_reads_back_only_when_it_declares_so(metadata_port):
    port = metadata_port.port
    assert hasattr(port, "get") is port.readable
    if port.readable:
        document = _document(8_100_003)
        port.ingest(document)
        assert _summary(port.get(8_100_003)) == _summary(document)
        assert [item["_id"] for item in port.files(8_100_003)] == [81_000_030]
        assert port.get(8_100_004) is None and port.files(8_100_004) is None


def test_every_metadata_store_lists_the_files_and_owner_of_a_transaction(metadata_port):
    """What fills the record of archived files for jobs archived before it (``fixity --backfill``)."""
    port = metadata_port.port
    document = _document(8_100_005)
    port.ingest(document)
    files = list(port.files(8_100_005) or [])
    assert [(item["_id"], item["name"], item["hashsum"], int(item["size"])) for item in files] == \
        [(81_000_050, "x.txt", hashlib.sha1(b"x").hexdigest(), 1)]
    assert {key: port.transaction(8_100_005)[key] for key in ("project", "instrument")} == \
        {"project": "1234a", "instrument": "54"}
    assert list(port.files(8_100_006) or []) == [] and port.transaction(8_100_006).get("project") is None


def test_only_a_structural_policy_takes_any_well_formed_document(policy):
    """A well-formed document naming a project no one has: a structural policy lets it in, a
    policy that decides who may ingest what refuses it."""
    document = transaction_metadata("no-such-project-4711") + [file_object("data/a", "x.txt", b"x")]
    if policy.structural_only:
        policy.check_ingest(document, "alice")
    else:
        with pytest.raises(PeerRejected):
            policy.check_ingest(document, "alice")
