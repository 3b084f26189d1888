"""The stages of a job as plain functions; the peers and the spool are passed in.

``stages`` runs each in a Celery task and ``stage_state`` records its progress: 0 % when it
starts, 100 % when it ends, FAILED with a readable message when it raises.
What 'load metadata' derives (the document with file ids, each file's member and offset) is
written to the job's sidecar on the volume, so later stages, a redelivered task or an
admin ``retry`` reuse the same file ids.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, BinaryIO

from ..core.redact import summarise
from . import bundle, tarhash
from .errors import ConnectionClosed, IngestError, IntegrityError, MetadataError, PeerError, PeerUnavailable
from .metrics import ARCHIVED_BYTES, ARCHIVED_FILES, RECEIVED_FILES
from .peers.base import ArchivePort, MetadataPort, PolicyPort, UniqueIdPort
from .spool import Spool
from .tarreader import MemberReader, open_bundle, read_metadata

logger = logging.getLogger(__name__)

Sidecar = dict[str, Any]


def check_tar(path: str) -> None:
    """'open tar': the body must be a readable, uncompressed tar."""
    open_bundle(path).close()


def _bundle_identity(path: str) -> dict[str, Any]:
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _reuse(spool: Spool, job_id: int, identity: dict[str, Any]) -> Sidecar | None:
    sidecar = spool.read_sidecar(job_id)
    if sidecar is not None and sidecar.get("bundle") == identity:
        logger.info("job %s: reusing the file ids reserved by an earlier attempt", job_id)
        return sidecar
    return None


def _record(job_id: int, document: list[dict[str, Any]], entries: list[bundle.FileEntry],
            identity: dict[str, Any], spool: Spool, uniqueid: UniqueIdPort, kind: str) -> Sidecar:
    start = uniqueid.reserve(len(entries), "file") if entries else 0
    document = bundle.assign_ids(document, entries, start)
    sidecar = {
        "job_id": int(job_id),
        "bundle": identity,
        "metadata": bundle.for_peers(document, job_id),
        "files": [entry.as_dict() for entry in entries],
    }
    spool.write_sidecar(job_id, sidecar)
    RECEIVED_FILES.labels(kind).inc(len(entries))
    return sidecar


def load_bundle_metadata(job_id: int, path: str, spool: Spool, uniqueid: UniqueIdPort,
                         metadata_limit: int = 64 * 1024 * 1024) -> Sidecar:
    """'load metadata' of an upload: parse metadata.txt, check it against the tar, reserve file ids."""
    identity = _bundle_identity(path)
    sidecar = _reuse(spool, job_id, identity)
    if sidecar is not None:
        return sidecar
    with open_bundle(path) as tar:
        raw = read_metadata(tar, metadata_limit)
        members = tar.getmembers()
    document = bundle.parse_document(raw)
    entries = bundle.file_entries(document)
    bundle.match_members(entries, members)
    return _record(job_id, document, entries, identity, spool, uniqueid, "upload")


def load_move_metadata(job_id: int, path: str, spool: Spool, uniqueid: UniqueIdPort,
                       roots: tuple[str, ...] = ()) -> Sidecar:
    """'load metadata' of a move: parse the document, check its sources, reserve file ids.

    With ``roots``, every ``source`` must resolve (links followed) to a path under one of them.
    """
    identity = _bundle_identity(path)
    sidecar = _reuse(spool, job_id, identity)
    if sidecar is not None:
        return sidecar
    with open(path, "rb") as handle:
        document = bundle.parse_document(handle.read())
    entries = bundle.file_entries(document, move=True)
    if not roots:
        raise MetadataError("moves are off: [ingest] move_roots names no directory")
    outside = [entry.source for entry in entries if not _under(entry.source, roots)]
    if outside:
        raise MetadataError("sources outside the allowed move roots ([ingest] move_roots): "
                            + summarise(outside, ", "))
    wrong = [problem for entry in entries if (problem := _source_mismatch(entry))]
    if wrong:
        raise MetadataError("moved files that are not what the document says (each left where it is): "
                            + summarise(wrong, ", "))
    return _record(job_id, document, entries, identity, spool, uniqueid, "move")


def _source_mismatch(entry: bundle.FileEntry) -> str | None:
    """What is wrong with a move source against its Files object (size, then hash), or None.

    A moved file is checked like an uploaded one, before it is moved: on a mismatch the job fails
    and the file stays where it was.
    """
    try:
        with open(entry.source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if entry.size is not None and size != entry.size:
                return f"{entry.source} has {size} bytes, not {entry.size}"
            if not entry.hashsum:
                return None
            digest = hashlib.new(entry.hashtype)
            while block := handle.read(1 << 20):
                digest.update(block)
    except FileNotFoundError:
        return None  # nothing to move: 'move files' fails as it always did, naming the file
    except OSError as exc:
        return f"{entry.source} cannot be read ({exc.strerror})"
    if digest.hexdigest() != entry.hashsum.lower():
        return f"{entry.source} has {entry.hashtype} {digest.hexdigest()}, not {entry.hashsum}"
    return None


def _under(source: str, roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(source)
    return any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root) for root in roots)


def check_policy(sidecar: Sidecar, user: str, policy: PolicyPort) -> None:
    """'Policy Validation': the policy service must accept this user and metadata."""
    policy.check_ingest(sidecar["metadata"], user)


def _files(sidecar: Sidecar) -> list[bundle.FileEntry]:
    return [bundle.FileEntry(**item) for item in sidecar["files"]]


def _delete_all(job_id: int, archive: ArchivePort, file_ids: list[int], retries: int = 3,
                delay: float = 0.2) -> list[int]:
    """Delete ``file_ids`` from the archive; return those that could not be deleted."""
    failed = []
    for file_id in file_ids:
        try:
            _retrying(lambda file_id=file_id: archive.delete(file_id), retries, delay,
                      f"job {job_id}: deleting file {file_id}")
        except PeerError as exc:
            logger.error("job %s: rollback could not delete file %s: %s", job_id, file_id, exc)
            failed.append(file_id)
    return failed


def _describe_rollback(file_ids: list[int], failed: list[int]) -> str:
    if not file_ids:
        return "nothing had been written to the archive"
    if failed:
        return (f"deleted {len(file_ids) - len(failed)} of the {len(file_ids)} files this job wrote to "
                f"the archive; could not delete file ids {failed}")
    return f"deleted the {len(file_ids)} files this job wrote to the archive"


def _retrying(work: Callable[[], Any], retries: int, delay: float, what: str) -> Any:
    """Call ``work``; while it raises ``PeerUnavailable``, call it again up to ``retries`` times,
    waiting ``delay`` seconds, doubled each time (not at all after ``ConnectionClosed``: the
    peer is there, the connection was not)."""
    attempt = 0
    while True:
        try:
            return work()
        except PeerUnavailable as exc:
            if attempt >= retries:
                raise
            logger.warning("%s: %s; trying again (%d of %d)", what, exc, attempt + 1, retries)
            if not isinstance(exc, ConnectionClosed):
                time.sleep(delay * (2 ** attempt))
            attempt += 1


class Ledger:
    """Which files of a job went to the archive, kept on the volume across attempts and workers.

    A file is recorded as started before its first byte is sent and as verified once the
    archive holds it whole with the right hash. A later attempt sends only what is not verified,
    and a rollback deletes every file any attempt started: nothing more, nothing less.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.started: set[int] = set()
        self.verified: set[int] = set()
        self._lock = threading.Lock()
        self._out = None
        if path is not None and os.path.exists(path):
            with open(path, encoding="ascii") as handle:
                for line in handle:
                    kind, _, value = line.strip().partition(" ")
                    if value.isdigit():
                        (self.verified if kind == "v" else self.started).add(int(value))

    def _record(self, kind: str, file_id: int) -> None:
        with self._lock:
            (self.verified if kind == "v" else self.started).add(int(file_id))
            if self.path is None:
                return
            if self._out is None:
                self._out = open(self.path, "a", encoding="ascii")  # noqa: SIM115 - closed by close()
            # Flushed at once: a worker killed after this line still leaves it for the next one.
            self._out.write(f"{kind} {int(file_id)}\n")
            self._out.flush()

    def start(self, file_id: int) -> None:
        """Record that ``file_id`` is about to be sent."""
        self._record("s", file_id)

    def verify(self, file_id: int) -> None:
        """Record that the archive holds ``file_id`` whole and verified."""
        self._record("v", file_id)

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None

    def reset(self, started: list[int]) -> None:
        """Forget everything but ``started`` (files a rollback could not delete)."""
        self.close()
        with self._lock:
            self.started, self.verified = set(started), set()
            if self.path is not None:
                with open(self.path, "w", encoding="ascii") as out:
                    out.writelines(f"s {file_id}\n" for file_id in started)


Report = Callable[[int, int, int, int, bool], None]


class _Meter:
    """Count the bytes and files sent by several threads; the stage's own thread reports them.

    Only that thread reports (``flush``): the report writes to the database, and a thread that
    did would open a connection of its own, one per short-lived sending thread.
    """

    def __init__(self, total: int, files: int, report: Report | None) -> None:
        self.total = total
        self.files = files
        self.done = 0
        self.files_done = 0
        self.report = report
        self.lock = threading.Lock()
        self._reported: tuple[int, int] | None = None

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count

    def file_done(self) -> None:
        with self.lock:
            self.files_done += 1

    def flush(self, final: bool = False) -> None:
        """Report the counts so far, if they changed (call from the stage's thread); ``final``
        reports them even if the reporter would otherwise wait."""
        # A file sent again takes its bytes back; the figure reported never goes backwards.
        done = max(self.done, self._reported[0]) if self._reported else self.done
        counts = (done, self.files_done)
        if self.report is not None and (counts != self._reported or final):
            self._reported = counts
            self.report(done, self.total, self.files_done, self.files, final)


# Files at least this large go to an archive that can copy ranges (the embedded one) by a kernel
# copy while another thread hashes the same bytes; smaller ones are read, hashed and written.
RANGE_COPY_MIN = 1 << 20


def _send(handle: BinaryIO, archive: ArchivePort, block_size: int, add: Callable[[int], None],
          known: dict[int, tuple[int, str]], entry: bundle.FileEntry) -> None:
    """Send one file from its offset in the bundle to the archive, then check its size and hash.

    ``known`` holds the digests taken while the bundle was received; a file whose digest is
    there is not hashed a second time.
    """
    digest = _known_digest(known, entry)
    reader = MemberReader(handle, entry.offset, entry.size, None if digest else entry.hashtype, block_size, add)
    mtime = entry.mtime or time.time()
    put_range = getattr(archive, "put_range", None)
    if put_range is not None and digest:
        put_range(entry.file_id, handle.fileno(), entry.offset, entry.size, mtime,
                  check=functools.partial(_check_digest, entry, digest))
        add(entry.size)
    elif put_range is not None and entry.size >= RANGE_COPY_MIN:
        with ThreadPoolExecutor(1, thread_name_prefix="hash") as hashing:
            hashed = hashing.submit(reader.drain)

            def check() -> None:
                hashed.result()
                _verify(entry, reader)

            put_range(entry.file_id, handle.fileno(), entry.offset, entry.size, mtime, check=check)
    else:
        archive.put(entry.file_id, reader, entry.size, mtime)
        _verify(entry, reader, digest)


def _known_digest(known: dict[int, tuple[int, str]], entry: bundle.FileEntry) -> str | None:
    """The digest taken during the upload of exactly this member's bytes, if it is of the right kind."""
    if entry.hashtype != tarhash.ALGORITHM or entry.offset is None:
        return None
    size, digest = known.get(entry.offset, (None, None))
    return digest if size == entry.size else None


def ingest_files(job_id: int, path: str, sidecar: Sidecar, archive: ArchivePort, block_size: int,
                 report: Report | None = None, final: bool = True,
                 concurrency: int = 1, ledger_path: str | None = None, file_retries: int = 3,
                 retry_delay: float = 0.2) -> None:
    """'ingest files': stream each file from its tar offset to the archive, checking size and hash.

    Up to ``concurrency`` files are sent at once. A file that meets a transient failure is sent
    again on its own, up to ``file_retries`` times. ``report(bytes_done, bytes_total, files_done,
    files_total, final)`` is called as bytes go out, and once more with everything sent. The
    files are made durable before the stage ends.

    The ledger at ``ledger_path`` remembers across attempts which files were started and which
    verified: a later attempt sends only the files not yet verified. On a failure every file
    any attempt started is deleted from the archive again and the error says so; except when a
    peer was unavailable and this is not the ``final`` attempt: the next attempt goes on.
    """
    entries = _files(sidecar)
    ledger = Ledger(ledger_path)
    pending = [entry for entry in entries if entry.file_id not in ledger.verified]
    concurrency = min(concurrency, getattr(archive, "MAX_CONCURRENCY", concurrency))
    meter = _Meter(sum(entry.size or 0 for entry in entries), len(entries), report)
    for entry in entries:
        if entry.file_id in ledger.verified:
            meter.add(entry.size or 0)
            meter.file_done()
    if len(pending) < len(entries):
        logger.info("job %s: %d of %d files were verified in the archive by an earlier attempt",
                    job_id, len(entries) - len(pending), len(entries))
    meter.flush(final=True)
    try:
        with open(path, "rb") as handle:
            known = tarhash.load(path, handle.fileno())

            def send(entry: bundle.FileEntry) -> None:
                sent = 0

                def add(count: int) -> None:
                    nonlocal sent
                    sent += count
                    meter.add(count)

                try:
                    _send(handle, archive, block_size, add, known, entry)
                except BaseException:
                    meter.add(-sent)  # the progress of a failed try is taken back
                    raise

            def attempt(entry: bundle.FileEntry) -> None:
                ledger.start(entry.file_id)
                _retrying(functools.partial(send, entry), file_retries, retry_delay,
                          f"job {job_id}: sending {entry.path} as file {entry.file_id}")
                ledger.verify(entry.file_id)
                meter.file_done()
                ARCHIVED_BYTES.labels("upload").inc(entry.size or 0)
                ARCHIVED_FILES.labels("upload").inc()

            _run_all(attempt, pending, concurrency, meter.flush)
            archive.make_durable([entry.file_id for entry in pending])
            meter.flush(final=True)
    except PeerUnavailable:
        if not final:
            raise
        raise_with_rollback(job_id, archive, sorted(ledger.started | ledger.verified), ledger)
    except Exception:  # noqa: BLE001 - whatever went wrong, undo the writes; the error goes on
        raise_with_rollback(job_id, archive, sorted(ledger.started | ledger.verified), ledger)
    finally:
        ledger.close()


def _run_all(work: Callable[[Any], None], items: list[Any], concurrency: int,
             tick: Callable[[], None] = lambda: None, every: float = 0.5) -> None:
    """Call ``work`` on every item in threads, up to ``concurrency`` at once; stop at the first
    error and raise it. This thread calls ``tick`` every ``every`` seconds meanwhile.

    Each thread takes its next item itself: handing items out from this thread would cost a
    thread switch per item, which for thousands of small files outweighs the work.
    """
    if not items:
        return
    concurrency = max(1, min(concurrency, len(items)))
    pending = iter(items)
    taking = threading.Lock()
    failed = threading.Event()

    def loop() -> None:
        while not failed.is_set():
            with taking:
                item = next(pending, _END)
            if item is _END:
                return
            try:
                work(item)
            except BaseException:
                failed.set()
                raise

    with ThreadPoolExecutor(concurrency, thread_name_prefix="archive") as pool:
        running = {pool.submit(loop) for _ in range(concurrency)}
        while running:
            done, running = wait(running, timeout=every, return_when=FIRST_COMPLETED)
            tick()
            errors = [future.exception() for future in done if future.exception() is not None]
            if errors:
                wait(running)
                raise errors[0]


_END = object()


def raise_with_rollback(job_id: int, archive: ArchivePort, file_ids: list[int],
                        ledger: Ledger | None = None) -> None:
    """Delete ``file_ids`` from the archive and raise the error being handled, saying so.

    The ``ledger`` then lists only the files that could not be deleted, as started: a later
    retry of the job sends every file again, and a later rollback tries those again.
    """
    exc = sys.exc_info()[1]
    reason = str(exc) if isinstance(exc, IngestError) else f"{exc.__class__.__name__}: {exc}"
    failed = _delete_all(job_id, archive, file_ids)
    if ledger is not None:
        ledger.reset(failed)
    raise IngestError(f"{reason}; {_describe_rollback(file_ids, failed)}") from exc


def _verify(entry: bundle.FileEntry, reader: MemberReader, digest: str | None = None) -> None:
    """Check the bytes ``reader`` sent: their count, and their hash (or the ``digest`` known for them)."""
    if reader.bytes_read != entry.size:
        raise IntegrityError(f"{entry.path}: sent {reader.bytes_read} bytes, expected {entry.size}")
    _check_digest(entry, digest or reader.hexdigest())


def _check_digest(entry: bundle.FileEntry, digest: str) -> None:
    if digest != entry.hashsum:
        raise IntegrityError(
            f"{entry.path}: {entry.hashtype} of the bytes is {digest}, metadata says {entry.hashsum}")


def move_files(sidecar: Sidecar, archive: ArchivePort) -> None:
    """'move files': ask the archive to move each file from its ``source`` path into place."""
    for entry in _files(sidecar):
        archive.patch(entry.file_id, entry.source)
        ARCHIVED_BYTES.labels("move").inc(entry.size or 0)
        ARCHIVED_FILES.labels("move").inc()


def ingest_metadata(job_id: int, sidecar: Sidecar, metadata: MetadataPort, archive: ArchivePort,
                    move: bool, final: bool = True, ledger_path: str | None = None) -> None:
    """'ingest metadata': record the transaction's metadata.

    If the metadata service refuses an upload's metadata (or stays unavailable through the
    ``final`` attempt), the files already archived for it are deleted again; moved files are
    left where the archive put them, since their source is gone.
    """
    try:
        metadata.ingest(sidecar["metadata"])
    except PeerError as exc:
        if move or (isinstance(exc, PeerUnavailable) and not final):
            raise
        raise_with_rollback(job_id, archive, [entry.file_id for entry in _files(sidecar)], Ledger(ledger_path))
