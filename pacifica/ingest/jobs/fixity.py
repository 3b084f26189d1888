"""Fixity audits: read archived files back, hash them, and compare with what was declared at ingest.

Every byte is checked on its way into the archive; an audit checks the years in between. It
reads each selected file of the record (``db.archived``) back from the archive (over HTTP,
through the same gate as ingest, or from the embedded archive), at most ``rate`` bytes a second,
and keeps each outcome as a fixity event and as the file's last outcome. Files the archive
reports on tape are skipped unless asked for (an audit must not recall a tape library). The first
check that passes also stores a SHA-256 of the file, so later audits do not rest on SHA-1 alone.

``pacifica-ingest-cmd fixity`` runs an audit in its own process; the service's duties queue
scheduled ones as Celery tasks (``audit_files``), which workers on every host share.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..bundles.document import file_path
from ..common import states
from ..common.errors import PeerRejected, PeerUnavailable
from ..common.settings import Settings
from ..db import archived, models
from ..db.archived import FAILED, MISSING, OK, Check, IngestArchivedFile
from ..peers.base import ArchivePort, ListingMetadataPort
from . import callbacks
from .celery_app import INGEST_APP, IngestTask

logger = logging.getLogger(__name__)

TAPE = "tape"
BLOCK_SIZE = 1 << 20
# Failures a report lists one by one; beyond them it counts (an archive that lost a whole
# disk must not make a report of gigabytes).
LISTED_FAILURES = 10_000


class Throttle:
    """Hold reading to at most ``rate`` bytes a second over a whole audit (0: no limit)."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.start = clock()
        self.count = 0

    def take(self, count: int) -> None:
        """Count ``count`` bytes read; wait until reading them kept to the rate."""
        if self.rate <= 0:
            return
        self.count += count
        ahead = self.count / self.rate - (self.clock() - self.start)
        if ahead > 0:
            self.sleep(ahead)


@dataclasses.dataclass(frozen=True)
class AuditOptions:
    """How an audit reads: its ``rate`` (bytes a second, 0: no limit), whether it recalls files
    from tape, whether it keeps a SHA-256 of files that have none."""

    rate: int = 0
    include_tape: bool = False
    second_digest: bool = True
    block_size: int = BLOCK_SIZE
    # How long a file asked back from tape is waited for before it is counted as skipped.
    recall_wait: float = 3600.0


@dataclasses.dataclass
class Report:
    """What an audit found: counts, bytes, time, and every failure with its path and digests."""

    started: datetime.datetime = dataclasses.field(default_factory=models.utcnow)
    seconds: float = 0.0
    checked: int = 0
    passed: int = 0
    failed: int = 0
    skipped_on_tape: int = 0
    bytes: int = 0
    failures: list[Check] = dataclasses.field(default_factory=list)
    stopped: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing failed and the audit ran to its end."""
        return not self.failed and not self.stopped

    def add(self, check: Check) -> None:
        """Count one check."""
        self.checked += 1
        self.bytes += check.size if check.passed else 0
        if check.passed:
            self.passed += 1
            return
        self.failed += 1
        if len(self.failures) < LISTED_FAILURES:
            self.failures.append(check)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "started": self.started.isoformat() + "Z", "seconds": round(self.seconds, 3), "checked": self.checked,
            "passed": self.passed, "failed": self.failed, "skipped_on_tape": self.skipped_on_tape,
            "bytes": self.bytes, "ok": self.ok, "stopped": self.stopped or None,
            "failures": [_failure(check) for check in self.failures],
        }

    def as_text(self) -> str:
        """The report for people: one summary line, then a line per failure."""
        rate = self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0
        lines = [f"fixity: checked {self.checked} files ({self.bytes} bytes) in {self.seconds:.1f} s "
                 f"({rate:.1f} MB/s): {self.passed} whole, {self.failed} failed, {self.skipped_on_tape} on tape "
                 "skipped"]
        lines += [f"FAILED job {check.job_id} file {check.file_id} {check.name}: {check.detail}"
                  for check in self.failures]
        if self.failed > len(self.failures):
            lines.append(f"... and {self.failed - len(self.failures)} more failures")
        if self.stopped:
            lines.append(f"the audit stopped early: {self.stopped}")
        return "\n".join(lines)


def _failure(check: Check) -> dict[str, Any]:
    return {"job_id": check.job_id, "file_id": check.file_id, "path": check.name, "size": check.size,
            "algorithm": check.algorithm, "expected": check.expected, "actual": check.actual,
            "outcome": check.outcome, "detail": check.detail}


def check_file(row: IngestArchivedFile, archive: ArchivePort, options: AuditOptions,
               throttle: Throttle) -> Check | None:
    """Read file ``row`` back from ``archive`` and compare it with the record; None when it is on
    tape and ``options`` do not recall tape. Raises ``PeerUnavailable`` when the archive cannot
    be asked (that says nothing of the file)."""

    def outcome(result: str, detail: str, algorithm: str = row.hashtype, actual: str = "",
                expected: str = row.hashsum, sha256: str | None = None) -> Check:
        return Check(row.file_id, row.job_id, row.name, row.size, algorithm, expected, actual, result,
                     detail, sha256)

    media = archive.media(row.file_id)
    if media is None:
        return outcome(MISSING, "the archive holds no such file")
    if media == TAPE and not (options.include_tape and archive.recall(row.file_id, options.recall_wait)):
        return None
    declared = hashlib.new(row.hashtype)
    modern = hashlib.sha256() if row.sha256 or options.second_digest else None
    size = 0
    try:
        for block in archive.read(row.file_id, options.block_size):
            declared.update(block)
            if modern is not None:
                modern.update(block)
            size += len(block)
            throttle.take(len(block))
    except PeerRejected as exc:
        if exc.status == 404 or "does not exist" in str(exc):
            return outcome(MISSING, "the archive holds no such file")
        return outcome(FAILED, f"the archive refused to send it: {exc}")
    actual = declared.hexdigest()
    if size != row.size:
        return outcome(FAILED, f"{size} bytes, not {row.size}", actual=actual)
    if actual != row.hashsum.lower():
        return outcome(FAILED, f"{row.hashtype} is {actual}, not {row.hashsum}", actual=actual)
    if modern is not None and row.sha256 and modern.hexdigest() != row.sha256:
        return outcome(FAILED, f"sha256 is {modern.hexdigest()}, not {row.sha256}", algorithm="sha256",
                       actual=modern.hexdigest(), expected=row.sha256)
    return outcome(OK, "", actual=actual, sha256=modern.hexdigest() if modern is not None and not row.sha256 else None)


def audit(rows: Iterable[IngestArchivedFile], archive: ArchivePort, options: AuditOptions,
          checked_since: datetime.datetime | None = None) -> Report:
    """Check every file of ``rows`` (skipping those found whole after ``checked_since``), record
    each outcome, and note the result in each job's history; return the report.

    A failure is logged as one JSON line, and re-sends the job's completion callback, if it has
    one, with the failures. An archive that cannot be reached stops the audit (its files are not
    failures); the report says so.
    """
    report = Report()
    throttle = Throttle(options.rate)
    began = time.monotonic()
    jobs: dict[int, list[Check]] = {}
    try:
        for row in rows:
            if checked_since is not None and row.verified >= checked_since:
                continue
            check = check_file(row, archive, options, throttle)
            if check is None:
                report.skipped_on_tape += 1
                continue
            archived.record_check(check)
            report.add(check)
            jobs.setdefault(check.job_id, []).append(check)
            if not check.passed:
                logger.error(json.dumps({"event": "fixity failure", **_failure(check)}, sort_keys=True))
    except PeerUnavailable as exc:
        report.stopped = str(exc)
        logger.error("fixity audit stopped: %s", exc)
    report.seconds = time.monotonic() - began
    for job_id, checks in jobs.items():
        _note_in_history(job_id, checks)
    return report


def _note_in_history(job_id: int, checks: list[Check]) -> None:
    """One event in the job's history for this audit's checks of its files."""
    failed = [check for check in checks if not check.passed]
    if not failed:
        models.note_event(job_id, f"fixity: {len(checks)} files checked, all whole (sha1 and size)")
        return
    shown = "; ".join(f"{check.name} (file {check.file_id}): {check.detail}" for check in failed[:20])
    more = f"; and {len(failed) - 20} more" if len(failed) > 20 else ""
    models.note_event(job_id, f"fixity FAILED: {len(failed)} of {len(checks)} files checked: {shown}{more}")
    callbacks.redeliver(job_id)


def options_from(settings: Settings, rate: int | None = None, include_tape: bool | None = None) -> AuditOptions:
    """The audit options of the ``[fixity]`` settings (``rate`` and ``include_tape`` override them)."""
    return AuditOptions(rate=settings.fixity_rate if rate is None else rate,
                        include_tape=settings.fixity_include_tape if include_tape is None else include_tape,
                        second_digest=settings.fixity_second_digest, block_size=min(settings.transfer_size, BLOCK_SIZE))


def schedule_due(settings: Settings) -> int:
    """Queue an audit task for every batch of files not found whole for ``[fixity] max_age``;
    return how many files were queued. Only file ids travel in the messages."""
    cutoff = models.utcnow() - datetime.timedelta(seconds=settings.fixity_max_age)
    batch: list[int] = []
    queued = 0
    for row in archived.walk_due(verified_before=cutoff):
        batch.append(row.file_id)
        if len(batch) >= settings.fixity_batch_files:
            audit_files.apply_async((batch,))
            queued += len(batch)
            batch = []
    if batch:
        audit_files.apply_async((batch,))
        queued += len(batch)
    if queued:
        logger.info("fixity: queued checks of %d files not found whole for %.0f days", queued,
                    settings.fixity_max_age / 86400)
    return queued


@INGEST_APP.task(name="pacifica.ingest.fixity_audit", base=IngestTask, bind=True)
def audit_files(self: IngestTask, file_ids: list[int]) -> dict[str, Any]:
    """Check the files ``file_ids`` (a scheduled audit's batch); files found whole since the batch
    was queued (within ``[fixity] max_age``) are skipped. Returns the report as data."""
    rt = self.runtime
    settings = rt.settings
    rows = IngestArchivedFile.select().where(IngestArchivedFile.file_id.in_([int(file_id) for file_id in file_ids]))
    fresh_after = models.utcnow() - datetime.timedelta(seconds=settings.fixity_max_age)
    report = audit(rows.order_by(IngestArchivedFile.file_id), rt.peers.archive, options_from(settings),
                   checked_since=fresh_after)
    logger.info("%s", report.as_text().splitlines()[0])
    return report.as_dict()


def backfill(metadata: ListingMetadataPort) -> tuple[int, int]:
    """Fill the record of archived files for the jobs that completed before it existed (a
    database the published service or an earlier version kept), from what the metadata service
    recorded of each; return (jobs filled, files recorded). Jobs already in the record are
    left as they are, so running it again does nothing."""
    recorded = archived.recorded_jobs()
    jobs = files = 0
    completed = (models.IngestState.select(models.IngestState.job_id, models.IngestState.submitter)
                 .where(models.IngestState.complete == True, models.IngestState.state == states.OK)  # noqa: E712
                 .order_by(models.IngestState.job_id))
    for job in completed.iterator():
        if job.job_id in recorded:
            continue
        items = metadata.files(job.job_id)
        if items is None:
            continue
        values = metadata.transaction(job.job_id)
        owner = archived.Owner(job.submitter, values.get("project"), values.get("instrument"))
        rows = ((int(item["_id"]), file_path(str(item.get("subdir") or ""), str(item["name"])),
                 int(item.get("size") or 0), str(item.get("hashtype") or "sha1"), str(item.get("hashsum") or ""))
                for item in items if "_id" in item and "name" in item and item.get("hashsum"))
        added = archived.record_files(job.job_id, rows, owner)
        if added:
            jobs += 1
            files += added
    return jobs, files
