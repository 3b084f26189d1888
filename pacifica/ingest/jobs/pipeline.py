"""The stages of a job as plain functions; the peers and the spool are passed in.

``stages`` runs each in a Celery task and ``stage_state`` records its progress: 0 % when it
starts, 100 % when it ends, FAILED with a readable message when it raises.
What 'load metadata' derives (the document with file ids, each file's member and offset) is
written to the job's manifest on the volume (``manifest``), so later stages, a redelivered task
or an admin ``retry`` reuse the same file ids.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import IO, Any, BinaryIO, TextIO, cast

from ...core import jsonbody
from ...core.redact import Problems, summarise
from ..bundles import digests, document
from ..bundles.tar import METADATA_MEMBER, MemberReader, walk
from ..common.errors import ConnectionClosed, IngestError, IntegrityError, MetadataError, PeerError, PeerUnavailable
from ..common.metrics import ARCHIVED_BYTES, ARCHIVED_FILES, RECEIVED_FILES
from ..db import archived
from ..peers.base import AdoptingArchivePort, ArchivePort, MetadataPort, PolicyPort, RangeArchivePort, UniqueIdPort
from ..volume.arrival import open_member, staged_members
from ..volume.manifest import FILE, BundleFile, Manifest, ManifestWriter, from_sidecar, kind_of, open_manifest
from ..volume.spool import Spool

logger = logging.getLogger(__name__)

def check_tar(path: str) -> None:
    """'open tar': the body must be an uncompressed tar (its first header is read; 'load metadata'
    walks every header once, and refuses a tar that breaks further on)."""
    for _tar, _info in walk(path):
        return


def _bundle_identity(path: str) -> dict[str, Any]:
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _reuse(spool: Spool, job_id: int, identity: dict[str, Any]) -> Manifest | None:
    manifest = open_manifest(spool.manifest_path(job_id))
    if manifest is None:
        return _from_sidecar(spool, job_id, identity)
    if manifest.about.get("bundle") == identity:
        logger.info("job %s: reusing the file ids reserved by an earlier attempt", job_id)
        return manifest
    manifest.close()
    return None


def _from_sidecar(spool: Spool, job_id: int, identity: dict[str, Any]) -> Manifest | None:
    """The manifest of a job whose metadata an earlier version loaded into a JSON sidecar."""
    sidecar = spool.read_sidecar(job_id)
    if sidecar is None or sidecar.get("bundle") != identity:
        return None
    logger.info("job %s: its metadata was loaded by an earlier version; keeping its file ids", job_id)
    return from_sidecar(spool.manifest_path(job_id), sidecar)


def _commit(writer: ManifestWriter, uniqueid: UniqueIdPort, kind: str) -> Manifest:
    start = uniqueid.reserve(writer.entries, "file") if writer.entries else 0
    manifest = writer.commit(start)
    RECEIVED_FILES.labels(kind).inc(writer.entries)
    return manifest


def _load_document(handle: IO[bytes], writer: ManifestWriter, *, move: bool = False) -> None:
    """Read a metadata document from ``handle`` one object at a time into ``writer``; raise
    ``MetadataError`` if it is not a JSON list of objects or has incomplete Files objects."""
    try:
        shape = jsonbody.outline(handle)
    except jsonbody.JsonRefused as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc}") from None
    if shape.kind != "array":
        raise MetadataError("metadata must be a JSON list of objects")
    incomplete = Problems()
    for index, item in enumerate(jsonbody.items(handle)):
        if not isinstance(item, dict):
            raise MetadataError(f"metadata item {index} is not an object")
        writer.add_item(index, item)
        if item.get("destinationTable") != document.FILES_TABLE:
            continue
        entry, problem = document.checked_entry(index, item, move=move)
        if entry is None:
            incomplete.add(problem)
        elif not incomplete:
            writer.add_entry(entry)
    if incomplete:
        raise MetadataError(summarise(incomplete))


def load_bundle_metadata(job_id: int, path: str, spool: Spool, uniqueid: UniqueIdPort,
                         metadata_limit: int = 64 * 1024 * 1024) -> Manifest:
    """'load metadata' of an upload: read metadata.txt, check it against the tar, reserve file ids.

    The member list and the document go into the job's manifest as they are read, so neither is
    ever held in memory, whatever their size.
    """
    identity = _bundle_identity(path)
    manifest = _reuse(spool, job_id, identity)
    if manifest is not None:
        return manifest
    with ManifestWriter(spool.manifest_path(job_id)) as writer:
        writer.set("bundle", identity)
        metadata = None
        for _tar, info in walk(path):
            kind = kind_of(info.isfile(), info.isdir(), info.issym() or info.islnk())
            writer.add_member(info.name, kind, info.size, info.offset_data, float(info.mtime))
            if metadata is None and kind == FILE and document.member_name(info.name) == METADATA_MEMBER:
                metadata = info
        if metadata is None:
            raise MetadataError("bundle has no metadata.txt")
        if metadata.size > metadata_limit:
            raise MetadataError(f"metadata.txt is {metadata.size} bytes, more than the {metadata_limit} byte limit "
                                "([ingest] metadata_limit)")
        with open_member(path, metadata) as handle:
            _load_document(handle, writer)
        problems = writer.match()
        if problems:
            raise MetadataError(summarise(problems))
        with open(path, "rb") as handle:
            writer.add_digests(digests.recorded(path, handle.fileno()))
            writer.set("digests_of", digests.identity(handle.fileno()))
        return _commit(writer, uniqueid, "upload")


def load_move_metadata(job_id: int, path: str, spool: Spool, uniqueid: UniqueIdPort,
                       roots: tuple[str, ...] = ()) -> Manifest:
    """'load metadata' of a move: read the document, check its sources, reserve file ids.

    With ``roots``, every ``source`` must resolve (links followed) to a path under one of them.
    """
    identity = _bundle_identity(path)
    manifest = _reuse(spool, job_id, identity)
    if manifest is not None:
        return manifest
    with ManifestWriter(spool.manifest_path(job_id)) as writer:
        writer.set("bundle", identity)
        with open(path, "rb") as handle:
            _load_document(handle, writer, move=True)
        if not roots:
            raise MetadataError("moves are off: [ingest] move_roots names no directory")
        # A move's entries all have a source (checked_entry refuses one without).
        outside = Problems(entry.source or "" for entry in writer.files() if not _under(entry.source or "", roots))
        if outside:
            raise MetadataError("sources outside the allowed move roots ([ingest] move_roots): "
                                + summarise(outside, ", "))
        wrong = Problems(problem for entry in writer.files()
                         if (problem := _source_mismatch(entry.source or "", entry)))
        if wrong:
            raise MetadataError("moved files that are not what the document says (each left where it is): "
                                + summarise(wrong, ", "))
        return _commit(writer, uniqueid, "move")


def _source_mismatch(source: str, entry: document.FileEntry) -> str | None:
    """What is wrong with a move source against its Files object (size, then hash), or None.

    A moved file is checked like an uploaded one, before it is moved: on a mismatch the job fails
    and the file stays where it was.
    """
    try:
        with open(source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if entry.size is not None and size != entry.size:
                return f"{source} has {size} bytes, not {entry.size}"
            if not entry.hashsum:
                return None
            digest = hashlib.new(entry.hashtype)
            while block := handle.read(1 << 20):
                digest.update(block)
    except FileNotFoundError:
        return None  # nothing to move: 'move files' fails as it always did, naming the file
    except OSError as exc:
        return f"{source} cannot be read ({exc.strerror})"
    if digest.hexdigest() != entry.hashsum.lower():
        return f"{source} has {entry.hashtype} {digest.hexdigest()}, not {entry.hashsum}"
    return None


def _under(source: str, roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(source)
    return any(os.path.commonpath([real, os.path.realpath(root)]) == os.path.realpath(root) for root in roots)


def check_policy(job_id: int, manifest: Manifest, user: str, policy: PolicyPort) -> None:
    """'Policy Validation': the policy service must accept this user and metadata."""
    policy.check_ingest(manifest.peer_items(job_id), user)


def _delete_all(job_id: int, archive: ArchivePort, file_ids: list[int], retries: int = 3,
                delay: float = 0.2) -> list[int]:
    """Delete ``file_ids`` from the archive; return those that could not be deleted."""
    failed = []
    for file_id in file_ids:
        try:
            _retrying(functools.partial(archive.delete, file_id), retries, delay,
                      functools.partial("job {}: deleting file {}".format, job_id, file_id))
        except PeerError as exc:
            logger.error("job %s: rollback could not delete file %s: %s", job_id, file_id, exc)
            failed.append(file_id)
    return failed


def _describe_rollback(file_ids: list[int], failed: list[int], written: set[int] | None = None) -> str:
    """What the rollback did, in words that match what the archive held: ``written`` are the
    files known to have been stored whole (all of ``file_ids`` when None); the others had only
    begun to be sent, and an archive that could not be reached may hold nothing of them."""
    if not file_ids:
        return "nothing had been written to the archive"
    written = set(file_ids) if written is None else written & set(file_ids)
    what = "files this job wrote to the archive"
    if len(written) < len(file_ids):
        what = f"files this job wrote or began to write to the archive ({len(written)} of them whole)"
    if not failed:
        return f"deleted the {len(file_ids)} {what}"
    shown = ", ".join(str(file_id) for file_id in failed[:20]) + (", ..." if len(failed) > 20 else "")
    text = f"deleted {len(file_ids) - len(failed)} of the {len(file_ids)} {what}; could not delete file ids [{shown}]"
    if not written & set(failed):
        text += " (their sending had only begun: the archive may hold nothing of them)"
    return text


def _retrying(work: Callable[[], Any], retries: int, delay: float, what: Callable[[], str]) -> Any:
    """Call ``work``; while it raises ``PeerUnavailable``, call it again up to ``retries`` times,
    waiting ``delay`` seconds, doubled each time (not at all after ``ConnectionClosed``: the
    peer is there, the connection was not). ``what`` says what the work was, for the warning
    (called only then: saying it for each of 100,000 files cost more than sending some of them)."""
    attempt = 0
    while True:
        try:
            return work()
        except PeerUnavailable as exc:
            if attempt >= retries:
                raise
            logger.warning("%s: %s; trying again (%d of %d)", what(), exc, attempt + 1, retries)
            if not isinstance(exc, ConnectionClosed):
                time.sleep(delay * (2 ** attempt))
            attempt += 1


class Ledger:
    """Which files of a job went to the archive, kept on the volume across attempts and workers.

    A file is recorded as started before its first byte is sent and as verified once the
    archive holds it whole with the right hash; a file announced with its batch but never begun
    (the batch stopped before it) is taken back. A later attempt sends only what is not verified,
    and a rollback deletes every file any attempt started: nothing more, nothing less (a worker
    killed mid-batch cannot take back the rest of its batch, so those are deleted too, which
    costs nothing: deleting a missing file is fine).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.started: set[int] = set()
        self.verified: set[int] = set()
        self._lock = threading.Lock()
        self._out: TextIO | None = None
        self._announced: set[int] = set()
        if path is not None and os.path.exists(path):
            with open(path, encoding="ascii", errors="replace") as handle:
                for line in handle:
                    kind, _, value = line.strip().partition(" ")
                    # Only whole lines count: the end of one cut off by a crash ("v 12" of "v 123")
                    # would name another file.
                    if not line.endswith("\n") or not value.isdigit():
                        continue
                    if kind == "v":
                        self.verified.add(int(value))
                    elif kind == "s":
                        self.started.add(int(value))
                    elif kind == "u":
                        self.started.discard(int(value))

    def _record(self, kind: str, file_ids: Iterable[int], remember: bool = True) -> None:
        file_ids = [int(file_id) for file_id in file_ids]
        with self._lock:
            if remember:
                (self.verified if kind == "v" else self.started).update(file_ids)
            if kind == "s":
                file_ids = [file_id for file_id in file_ids if file_id not in self._announced]
            elif kind == "u":
                file_ids = [file_id for file_id in file_ids if file_id in self._announced]
            if self.path is None or not file_ids:
                return
            if self._out is None:
                self._out = open(self.path, "a", encoding="ascii")  # noqa: SIM115 - closed by close()
            # Flushed at once (one write for the lot): a worker killed after this still leaves
            # the lines for the next one.
            self._out.write("".join(f"{kind} {file_id}\n" for file_id in file_ids))
            self._out.flush()

    def announce(self, *file_ids: int) -> None:
        """Write down that ``file_ids`` may be sent next, in one write: a worker killed while
        sending them leaves them to the next attempt's rollback. ``start`` then only counts
        them, in memory, as the files this attempt wrote."""
        self._record("s", file_ids, remember=False)
        self._announced.update(file_ids)

    def retract(self, *file_ids: int) -> None:
        """Take back announced ``file_ids`` that were never begun."""
        self._record("u", file_ids, remember=False)
        with self._lock:
            self._announced.difference_update(file_ids)

    def start(self, *file_ids: int) -> None:
        """Record that ``file_ids`` are about to be sent."""
        self._record("s", file_ids)

    def verify(self, *file_ids: int) -> None:
        """Record that the archive holds ``file_ids`` whole and verified."""
        self._record("v", file_ids)

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

    def file_done(self, count: int = 1) -> None:
        with self.lock:
            self.files_done += count

    def flush(self, final: bool = False) -> None:
        """Report the counts so far, if they changed (call from the stage's thread); ``final``
        reports them even if the reporter would otherwise wait."""
        # A file sent again takes its bytes back; the figure reported never goes backwards.
        done = max(self.done, self._reported[0]) if self._reported else self.done
        counts = (done, self.files_done)
        if self.report is not None and (counts != self._reported or final):
            self._reported = counts
            self.report(done, self.total, self.files_done, self.files, final)


# A single sender records files in the ledger this many at a time (or this many bytes' worth:
# a later attempt sends again what a batch cut short had not recorded as verified).
BATCH_FILES = 256
BATCH_BYTES = 256 << 20

# Files at least this large go to an archive that can copy ranges (the embedded one) by a kernel
# copy while another thread hashes the same bytes; smaller ones are read, hashed and written.
RANGE_COPY_MIN = 1 << 20


def _send(handle: BinaryIO, archive: ArchivePort, block_size: int, add: Callable[[int], None],
          trusted: bool, staged: dict[int, str], entry: BundleFile) -> None:
    """Send one file from its offset in the bundle to the archive, then check its size and hash.

    With ``trusted``, the digests taken while the bundle was received still hold: a file whose
    digest was taken is not hashed a second time. A file ``staged`` as the upload arrived (data
    offset → path) is adopted by an archive that can, and read from where it was staged otherwise.
    """
    digest = entry.digest if trusted and entry.hashtype == digests.ALGORITHM else None
    if entry.offset in staged:
        _send_staged(staged[entry.offset], archive, block_size, add, digest, entry)
        return
    mtime = entry.mtime or time.time()
    ranged = cast(RangeArchivePort, archive) if archive.copies_ranges else None
    if ranged is not None and digest:
        # The digest is known: the kernel copies the bytes, nothing reads them.
        ranged.put_range(entry.file_id, handle.fileno(), entry.offset, entry.size, mtime,
                  check=functools.partial(_check_digest, entry, digest))
        add(entry.size)
        return
    reader = MemberReader(handle, entry.offset, entry.size, None if digest else entry.hashtype, block_size, add)
    if ranged is not None and entry.size >= RANGE_COPY_MIN:
        with ThreadPoolExecutor(1, thread_name_prefix="hash") as hashing:
            hashed = hashing.submit(reader.drain)

            def check() -> None:
                hashed.result()
                _verify(entry, reader)

            ranged.put_range(entry.file_id, handle.fileno(), entry.offset, entry.size, mtime, check=check)
    else:
        archive.put(entry.file_id, reader, entry.size, mtime)
        _verify(entry, reader, digest)


def _send_staged(path: str, archive: ArchivePort, block_size: int, add: Callable[[int], None],
                 digest: str | None, entry: BundleFile) -> None:
    """Send one file staged as the upload arrived (see ``volume.arrival``): linked into an
    archive that adopts files, its hash checked first (from ``digest``, or by reading it)."""
    mtime = entry.mtime or time.time()
    if not archive.adopts_files:
        with open(path, "rb") as handle:
            _send(handle, archive, block_size, add, digest is not None, {},
                  dataclasses.replace(entry, offset=0, digest=digest))
        return

    def check() -> None:
        if digest:
            _check_digest(entry, digest)
            return
        with open(path, "rb") as handle:
            reader = MemberReader(handle, 0, entry.size, entry.hashtype, block_size)
            reader.drain()
        _verify(entry, reader)

    cast(AdoptingArchivePort, archive).adopt(entry.file_id, path, entry.size, mtime, check=check)
    add(entry.size)


def ingest_files(job_id: int, path: str, manifest: Manifest, archive: ArchivePort, block_size: int,
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
    The files are read from the manifest one at a time, never listed whole.
    """
    ledger = Ledger(ledger_path)
    count = manifest.count()
    meter = _Meter(manifest.total_bytes(), count, report)
    # A first attempt (nothing verified yet) skips this pass over the whole manifest.
    for entry in manifest.files() if ledger.verified else ():
        if entry.file_id in ledger.verified:
            meter.add(entry.size)
            meter.file_done()
    if meter.files_done:
        logger.info("job %s: %d of %d files were verified in the archive by an earlier attempt",
                    job_id, meter.files_done, count)
    meter.flush(final=True)
    sent: list[int] = []
    try:
        staged = staged_members(path)
        with open(path, "rb") as handle:
            trusted = manifest.about.get("digests_of") == digests.identity(handle.fileno())

            def send(entry: BundleFile) -> None:
                progress = 0

                def add(count: int) -> None:
                    nonlocal progress
                    progress += count
                    meter.add(count)

                try:
                    _send(handle, archive, block_size, add, trusted, staged, entry)
                except BaseException:
                    meter.add(-progress)  # the progress of a failed try is taken back
                    raise

            def attempt(batch: list[BundleFile]) -> None:
                # The whole batch is written down before its first byte is sent, and the files
                # verified so far as verified however the batch ends: two writes a batch. The
                # files begun and done are counted once a batch too (a few microseconds a file
                # saved, of some fifty that a small file costs).
                ledger.announce(*(entry.file_id for entry in batch))
                verified: list[int] = []
                begun = 0
                try:
                    for entry in batch:
                        begun += 1
                        _retrying(functools.partial(send, entry), file_retries, retry_delay,
                                  functools.partial(_sending, job_id, entry))
                        verified.append(entry.file_id)
                finally:
                    ledger.start(*(entry.file_id for entry in batch[:begun]))
                    meter.file_done(len(verified))
                    ledger.verify(*verified)
                    ledger.retract(*(entry.file_id for entry in batch[begun:]))
                    sent.extend(verified)
                    ARCHIVED_BYTES.labels("upload").inc(sum(entry.size for entry in batch[:len(verified)]))
                    ARCHIVED_FILES.labels("upload").inc(len(verified))

            workers = min(concurrency, archive.max_concurrency, count - meter.files_done)
            pending = (entry for entry in manifest.files() if entry.file_id not in ledger.verified) \
                if ledger.verified else manifest.files()
            # One sender takes files in batches; several take one file at a time, so that a few
            # large files still spread over all of them.
            _run_all(attempt, _batches(pending, BATCH_FILES if workers == 1 else 1, BATCH_BYTES),
                     workers, meter.flush)
            archive.make_durable(sent)
            meter.flush(final=True)
    except PeerUnavailable:
        if not final:
            raise
        raise_with_rollback(job_id, archive, sorted(ledger.started | ledger.verified), ledger)
    except Exception:  # noqa: BLE001 - whatever went wrong, undo the writes; the error goes on
        raise_with_rollback(job_id, archive, sorted(ledger.started | ledger.verified), ledger)
    finally:
        ledger.close()


def _sending(job_id: int, entry: BundleFile) -> str:
    """What sending ``entry`` is, in a warning."""
    return f"job {job_id}: sending {entry.path} as file {entry.file_id}"


def _batches(entries: Iterable[BundleFile], most: int, most_bytes: int) -> Iterator[list[BundleFile]]:
    """``entries`` in lists of up to ``most`` files and (beyond the first file) ``most_bytes``."""
    batch: list[BundleFile] = []
    size = 0
    for entry in entries:
        if batch and (len(batch) >= most or size + entry.size > most_bytes):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.size
    if batch:
        yield batch


def _run_all(work: Callable[[Any], None], items: Iterable[Any], concurrency: int,
             tick: Callable[[], None] = lambda: None, every: float = 0.5) -> None:
    """Call ``work`` on every item in threads, up to ``concurrency`` at once; stop at the first
    error and raise it. This thread calls ``tick`` every ``every`` seconds meanwhile.

    Each thread takes its next item itself (``items`` is read under a lock, so it may be a
    generator): handing items out from this thread would cost a thread switch per item, which
    for thousands of small files outweighs the work.
    """
    if concurrency < 1:
        return
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
            errors = [error for future in done if (error := future.exception()) is not None]
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
    written = set(ledger.verified) if ledger is not None and ledger.path else None
    failed = _delete_all(job_id, archive, file_ids)
    if ledger is not None:
        ledger.reset(failed)
    raise IngestError(f"{reason}; {_describe_rollback(file_ids, failed, written)}") from exc


def _verify(entry: BundleFile, reader: MemberReader, digest: str | None = None) -> None:
    """Check the bytes ``reader`` sent: their count, and their hash (or the ``digest`` known for them)."""
    if reader.bytes_read != entry.size:
        raise IntegrityError(f"{entry.path}: sent {reader.bytes_read} bytes, expected {entry.size}")
    _check_digest(entry, digest or reader.hexdigest())


def _check_digest(entry: BundleFile, digest: str) -> None:
    if digest != entry.hashsum:
        raise IntegrityError(
            f"{entry.path}: {entry.hashtype} of the bytes is {digest}, metadata says {entry.hashsum}")


def move_files(manifest: Manifest, archive: ArchivePort) -> None:
    """'move files': ask the archive to move each file from its ``source`` path into place."""
    for entry in manifest.moved_files():
        archive.patch(entry.file_id, entry.source)
        ARCHIVED_BYTES.labels("move").inc(entry.size or 0)
        ARCHIVED_FILES.labels("move").inc()


def ingest_metadata(job_id: int, manifest: Manifest, metadata: MetadataPort, archive: ArchivePort,
                    move: bool, final: bool = True, ledger_path: str | None = None,
                    forget: Callable[[], object] = lambda: None) -> None:
    """'ingest metadata': record the transaction's metadata.

    If the metadata service refuses an upload's metadata (or stays unavailable through the
    ``final`` attempt), the files already archived for it are deleted again, after ``forget``
    takes them out of the record of archived files; moved files are left where the archive put
    them, since their source is gone.
    """
    try:
        metadata.ingest(manifest.peer_items(job_id))
    except PeerError as exc:
        if move or (isinstance(exc, PeerUnavailable) and not final):
            raise
        forget()
        raise_with_rollback(job_id, archive, manifest.file_ids(), Ledger(ledger_path))


def record_archived(job_id: int, manifest: Manifest, submitter: str | None) -> int:
    """Keep the job's files in the record of what was archived (for fixity audits and quotas),
    counted against ``submitter`` and the document's project and instrument; return how many
    were new."""
    values = manifest.transaction_values()
    owner = archived.Owner(submitter=submitter, project=values.get("project"), instrument=values.get("instrument"))
    return archived.record_files(job_id, manifest.recorded_files(), owner)
