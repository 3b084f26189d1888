"""What the agent does, one pass at a time: find what is whole, bundle it, send it, follow it,
prune it.

A pass sweeps every watched directory (the watchdog observers only make passes come sooner),
so nothing written while the agent was down is missed. A file is whole once its size and mtime
have not changed for the rule's quiet period, or once its marker is there (``<file>.done``; for a
run directory, the marker file in it). Each bundle is written down in the journal before it is
sent, checked with ``/validate`` first, and sent once; its source files are deleted, when
pruning is on, only after the service says the job is complete and the digest it recorded for
each file equals the agent's digest of the local file now.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .bundle import BundleFile, SourceChanged, digest, files_of, layout, metadata_document
from .journal import COMPLETE, FAILED, PRUNED, READY, SENDING, SENT, Bundle, Journal
from .openfiles import open_for_writing
from .service import Service, Unavailable

logger = logging.getLogger(__name__)

FILE, DIRECTORY = "file", "directory"
# A JSON file beside the data whose keys override the rule's transaction values for its directory
# (``{"project": "1234b", "Tag": "calibration"}``); it is never sent.
OVERRIDES = "pacifica.json"
DONE_SUFFIX = ".done"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One watched directory: how its files are bundled and described."""

    root: str
    transaction: dict[str, Any]
    per: str = FILE
    quiet: float = 10.0
    marker: str = "DONE"  # the file that says a run directory is whole (per directory)

    def ignored(self, name: str) -> bool:
        """Files that are never sent: the markers, the overrides, hidden and temporary files."""
        return (name in (OVERRIDES, self.marker) or name.startswith(".")
                or name.endswith((DONE_SUFFIX, ".part", ".tmp", "~")))


@dataclasses.dataclass
class Seen:
    """A file as last observed: its version, and since when it has been unchanged."""

    size: int
    mtime_ns: int
    since: float


class Agent:
    """Send what ``rules`` find to ``service``, keeping ``journal``."""

    def __init__(self, rules: Iterable[Rule], service: Service, journal: Journal, prune: bool = False,
                 keep_free: int = 0, clock=time.monotonic) -> None:
        self.rules = list(rules)
        self.service = service
        self.journal = journal
        self.prune = prune
        self.keep_free = keep_free
        self.clock = clock
        self.seen: dict[str, Seen] = {}
        self.waiting: dict[str, str] = {}  # path -> why it is not sent yet, for ``status``

    # Finding what is whole ---------------------------------------------------------------------

    def _observe(self, path: str, now: float) -> tuple[bool, os.stat_result] | None:
        """Whether the file at ``path`` is quiet (unchanged for its period), and its stat; None if
        it is gone."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self.seen.pop(path, None)
            return None
        seen = self.seen.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            self.seen[path] = Seen(stat.st_size, stat.st_mtime_ns, now)
            return False, stat
        return True, stat

    def _files_under(self, rule: Rule, directory: str) -> Iterator[str]:
        for folder, subfolders, names in os.walk(directory):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            for name in sorted(names):
                if not rule.ignored(name):
                    yield os.path.join(folder, name)

    def find(self) -> list[tuple[Rule, str, list[tuple[str, os.stat_result]]]]:
        """The bundles ready to make: (rule, bundle name, [(path, stat)]) of files not sent yet."""
        now = self.clock()
        self.waiting = {}
        ready = []
        for rule in self.rules:
            if not os.path.isdir(rule.root):
                continue
            if rule.per == FILE:
                for path in self._files_under(rule, rule.root):
                    found = self._whole(rule, [path], now, os.path.exists(path + DONE_SUFFIX))
                    if found:
                        ready.append((rule, os.path.relpath(path, rule.root), found))
            else:
                for name in sorted(os.listdir(rule.root)):
                    directory = os.path.join(rule.root, name)
                    if name.startswith(".") or not os.path.isdir(directory):
                        continue
                    marked = os.path.exists(os.path.join(directory, rule.marker))
                    found = self._whole(rule, list(self._files_under(rule, directory)), now, marked)
                    if found:
                        ready.append((rule, name, found))
        return ready

    def _whole(self, rule: Rule, paths: list[str], now: float, marked: bool) -> list[tuple[str, os.stat_result]]:
        """The files of ``paths`` not sent yet, if all of them are whole (else none)."""
        fresh, quiet_for = [], []
        for path in paths:
            observed = self._observe(path, now)
            if observed is None:
                continue
            quiet, stat = observed
            if self.journal.known(path, stat.st_size, stat.st_mtime_ns):
                continue
            fresh.append((path, stat))
            quiet_for.append(now - self.seen[path].since if quiet else 0.0)
        if not fresh:
            return []
        if marked or min(quiet_for) >= rule.quiet:
            writing = open_for_writing(path for path, _stat in fresh)
            if writing:
                for path in writing:
                    self.waiting[path] = "still open for writing"
                    self.seen.pop(path, None)  # quiet again from when it is closed
                return []
            for path, _stat in fresh:
                self.waiting.pop(path, None)
            return fresh
        for path, _stat in fresh:
            self.waiting[path] = f"waiting for {rule.quiet:g} s of quiet"
        return []

    # Making and sending bundles ----------------------------------------------------------------

    def make(self, rule: Rule, name: str, found: list[tuple[str, os.stat_result]]) -> Bundle | None:
        """Hash the files, write the bundle down, check its metadata with the service; None if a
        file changed meanwhile (it is looked at again next pass)."""
        try:
            files = files_of(rule.root, [path for path, _stat in found])
        except (SourceChanged, FileNotFoundError) as exc:
            logger.info("%s: not bundled yet: %s", name, exc)
            for path, _stat in found:
                self.seen.pop(path, None)
            return None
        transaction = {**rule.transaction, **_overrides(rule, [path for path, _stat in found])}
        keys = {key: value for key, value in transaction.items() if key not in ("submitter", "project", "instrument")}
        core = {key: transaction.get(key) for key in ("submitter", "project", "instrument")}
        extra = [{"destinationTable": "TransactionKeyValue", "key": key, "value": str(value)}
                 for key, value in sorted(keys.items())]
        metadata = metadata_document(files, core, extra)
        mtime = max((entry.mtime for entry in files), default=0)
        pieces = layout(files, metadata, mtime)
        length = pieces[-1].offset + pieces[-1].size
        versions = [(path, stat.st_size, stat.st_mtime_ns) for path, stat in found]
        bundle = self.journal.add_bundle(rule.root, name, files, versions, metadata, mtime, length)
        logger.info("bundle %s: %s, %d files, %d bytes", bundle.id, name, len(files), length)
        return bundle

    def check(self, bundle: Bundle) -> bool:
        """Ask ``/validate`` before a byte is sent; a bundle it refuses fails, naming why."""
        problems = self.service.validate(bundle.metadata)
        if problems:
            self.journal.update(bundle.id, state=FAILED, error="refused by /validate: " + "; ".join(problems)[:2000])
            logger.error("bundle %s (%s) refused by the service: %s", bundle.id, bundle.name, problems)
            return False
        return True

    def send(self, bundle: Bundle, progress=None) -> None:
        """Send one bundle (or go on with it)."""
        if bundle.state == READY and not self.check(bundle):
            return
        job_id = self.service.send(bundle, self.journal, progress)
        logger.info("bundle %s sent: job %s", bundle.id, job_id)

    def follow(self, bundle: Bundle) -> None:
        """Ask how a sent bundle's job went."""
        assert bundle.job_id is not None
        state = self.service.state(bundle.job_id)
        if state.get("state") == "FAILED":
            self.journal.update(bundle.id, state=FAILED, error=f"job {bundle.job_id} failed in "
                                f"{state.get('task')}: {state.get('exception', '')}"[:2000])
            logger.error("bundle %s: job %s failed: %s", bundle.id, bundle.job_id, state.get("exception"))
        elif state.get("complete"):
            self.journal.update(bundle.id, state=COMPLETE)
            logger.info("bundle %s: job %s complete", bundle.id, bundle.job_id)

    # Pruning -----------------------------------------------------------------------------------

    def prune_one(self, bundle: Bundle) -> bool:
        """Delete the bundle's source files if the service holds each whole: its job is complete,
        the digest it recorded for each file equals the local file's now, the archive holds the
        file's size now, and no fixity check found it changed. Whatever cannot be checked is kept."""
        assert bundle.job_id is not None
        state = self.service.state(bundle.job_id)
        if not state.get("complete") or state.get("state") != "OK":
            return False
        recorded = {item["path"]: item for item in self.service.files(bundle.job_id)}
        safe: list[BundleFile] = []
        for entry in bundle.files:
            item = recorded.get(entry.arcname)
            if (item is None or item.get("hashtype") != "sha1" or item.get("hashsum") != entry.sha1
                    or item.get("stored_size") != entry.size or item.get("outcome") in ("failed", "missing")):
                logger.warning("bundle %s: %s is not held whole by the service and its archive (%s); kept", bundle.id,
                               entry.source, item)
                return False
            try:
                size, sha1 = digest(entry.source)
            except FileNotFoundError:
                continue
            if (size, sha1) != (entry.size, entry.sha1):
                logger.info("bundle %s: %s changed since it was sent; kept (it is a new version)", bundle.id,
                            entry.source)
                continue
            safe.append(entry)
        for entry in safe:
            os.remove(entry.source)
        self.journal.update(bundle.id, state=PRUNED)
        logger.info("bundle %s: pruned %d source files", bundle.id, len(safe))
        return True

    def _prunable(self) -> list[Bundle]:
        """The complete bundles to prune now: all of them, or, with ``keep_free``, the oldest
        until a watched filesystem has that much free."""
        complete = self.journal.bundles(COMPLETE)
        if not self.keep_free:
            return complete
        chosen = []
        for bundle in complete:
            if shutil.disk_usage(bundle.root).free >= self.keep_free:
                break
            chosen.append(bundle)
        return chosen

    # One pass ----------------------------------------------------------------------------------

    def step(self, progress=None) -> None:
        """One pass: find and bundle what is whole, send what is not sent, follow what is, prune."""
        for rule, name, found in self.find():
            self.make(rule, name, found)
        for bundle in self.journal.bundles(READY, SENDING):
            try:
                self.send(bundle, progress)
            except Unavailable as exc:
                self.journal.update(bundle.id, error=str(exc)[:2000])
                logger.warning("bundle %s: %s; trying again next pass", bundle.id, exc)
                return
            except SourceChanged as exc:
                self.journal.update(bundle.id, state=FAILED, error=str(exc)[:2000])
        for bundle in self.journal.bundles(SENT):
            try:
                self.follow(bundle)
            except Unavailable as exc:
                logger.warning("bundle %s: %s", bundle.id, exc)
        if self.prune:
            for bundle in self._prunable():
                try:
                    self.prune_one(bundle)
                except Unavailable as exc:
                    logger.warning("bundle %s: not pruned: %s", bundle.id, exc)

    def busy(self) -> bool:
        """Whether anything is still on its way: waiting for quiet, to be sent, or followed (or
        pruned, when pruning is on)."""
        states = [READY, SENDING, SENT] + ([COMPLETE] if self.prune and not self.keep_free else [])
        return bool(self.waiting) or bool(self.journal.bundles(*states))


def _overrides(rule: Rule, paths: list[str]) -> dict[str, Any]:
    """The overrides file nearest the files (their directory, up to the watched root)."""
    folder = os.path.dirname(paths[0]) if paths else rule.root
    while True:
        candidate = os.path.join(folder, OVERRIDES)
        if os.path.isfile(candidate):
            try:
                with open(candidate, encoding="utf-8") as handle:
                    values = json.load(handle)
                return values if isinstance(values, dict) else {}
            except (OSError, ValueError) as exc:
                logger.warning("%s cannot be read (%s); the rule's values are used", candidate, exc)
                return {}
        if os.path.abspath(folder) == os.path.abspath(rule.root) or os.path.dirname(folder) == folder:
            return {}
        folder = os.path.dirname(folder)
