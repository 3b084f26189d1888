"""``pacifica-ingest-agent``: ``watch`` directories and send what is written there; ``status``."""

from __future__ import annotations

import argparse
import configparser
import datetime
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from .agent import DIRECTORY, FILE, Agent, Rule
from .journal import Journal
from .service import Service

logger = logging.getLogger("pacifica.agent")

DEFAULT_JOURNAL = os.path.join("~", ".pacifica-ingest-agent", "journal.sqlite3")
TOKEN_ENV = "PACIFICA_INGEST_TOKEN"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 1024, "MIB": 1024**2,
          "GIB": 1024**3, "TIB": 1024**4}


def seconds(text: str) -> float:
    """``10s``, ``2m``, ``1h`` or a bare number of seconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def size(text: str) -> int:
    """``50MB``, ``1GiB``, ``10 MB/s`` or a bare number of bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*(/\s*s)?\s*", str(text))
    if not match or match.group(2).upper() not in _SIZES:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 50MB, 1GiB)")
    return int(float(match.group(1)) * _SIZES[match.group(2).upper()])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-ingest-agent", description="Send what an instrument writes to "
                                     "the Pacifica ingest service, whole, once, and prune it only when safe.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
                                         "examples:\n  pacifica-ingest-agent watch /data/run --url http://ingest:8066 "
                                         "--submitter 10 --project 1234a --instrument 54\n"
                                         "  pacifica-ingest-agent watch --config agent.ini\n"
                                         "  pacifica-ingest-agent status"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    watch = sub.add_parser("watch", help="watch directories and send what is written there",
                           description="Watch DIRs (inotify, or polling for shares), and sweep them on start-up "
                           "and every --sweep, so that nothing is missed. Files whole for --quiet (or marked "
                           "with <file>.done, or a run directory with its marker) are bundled --per file or "
                           "per run directory, checked with the service's /validate, sent once as resumable "
                           "uploads, and with --prune deleted once the service holds them whole.")
    watch.add_argument("directories", nargs="*", metavar="DIR")
    watch.add_argument("--config", help="an INI file: [agent] url, token, journal, prune, ...; one "
                       "[watch <DIR>] section per directory with submitter, project, instrument, per, quiet")
    watch.add_argument("--url", help="the ingest service (http://host:8066)")
    watch.add_argument("--token", default=None, help=f"an API token of the service (default: ${TOKEN_ENV})")
    watch.add_argument("--submitter", help="Transactions.submitter of every bundle")
    watch.add_argument("--project", help="Transactions.project of every bundle")
    watch.add_argument("--instrument", help="Transactions.instrument of every bundle")
    watch.add_argument("--per", choices=(FILE, DIRECTORY), default=FILE,
                       help="one bundle per file, or per run directory (each directory under DIR)")
    watch.add_argument("--quiet", type=seconds, default=10.0, help="how long a file must not change (10s)")
    watch.add_argument("--marker", default="DONE", help="the file that says a run directory is whole (DONE)")
    watch.add_argument("--prune", action="store_true", help="delete source files once the service holds them whole")
    watch.add_argument("--keep-free", type=size, default=0, metavar="SIZE",
                       help="with --prune: prune only while the disk has less than SIZE free, oldest first")
    watch.add_argument("--rate", type=size, default=0, metavar="SIZE/s", help="bandwidth cap (0: none)")
    watch.add_argument("--streams", type=int, default=1, metavar="N",
                       help="send each bundle as N parallel streams (tus concatenation; for long links)")
    watch.add_argument("--poll", action="store_true", help="poll instead of inotify (SMB/NFS shares)")
    watch.add_argument("--sweep", type=seconds, default=60.0, help="sweep everything this often (60s)")
    watch.add_argument("--journal", default=None, help=f"the journal (default {DEFAULT_JOURNAL})")
    watch.add_argument("--once", action="store_true",
                       help="send what is there, wait until it is complete (and pruned), then exit")
    watch.add_argument("--timeout", type=seconds, default=0.0,
                       help="with --once: give up after this long (exit status 1), e.g. when the service is down")
    status = sub.add_parser("status", help="what the agent has sent, is sending and waits for")
    status.add_argument("--journal", default=None, help=f"the journal (default {DEFAULT_JOURNAL})")
    status.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    return parser


def _journal_path(given: str | None) -> str:
    return os.path.abspath(os.path.expanduser(given or os.environ.get("PACIFICA_AGENT_JOURNAL") or DEFAULT_JOURNAL))


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[Rule]]:
    """The agent's settings and rules: the command line, or its configuration file."""
    options: dict[str, Any] = {"url": args.url, "token": args.token or os.environ.get(TOKEN_ENV),
                               "journal": args.journal, "prune": args.prune, "keep_free": args.keep_free,
                               "rate": args.rate, "poll": args.poll, "sweep": args.sweep, "streams": args.streams}
    rules = [Rule(os.path.abspath(directory), _transaction(vars(args)), args.per, args.quiet, args.marker)
             for directory in args.directories]
    if args.config:
        config = configparser.ConfigParser(interpolation=None)
        if not config.read(args.config, encoding="utf-8"):
            raise SystemExit(f"pacifica-ingest-agent: cannot read {args.config}")
        agent = config["agent"] if config.has_section("agent") else {}
        for key in ("url", "token", "journal"):
            options[key] = options[key] or agent.get(key)
        options["prune"] = options["prune"] or str(agent.get("prune", "false")).lower() in ("1", "true", "yes", "on")
        options["keep_free"] = options["keep_free"] or size(agent.get("keep_free", "0"))
        options["rate"] = options["rate"] or size(agent.get("rate", "0"))
        options["poll"] = options["poll"] or str(agent.get("poll", "false")).lower() in ("1", "true", "yes", "on")
        options["streams"] = max(options["streams"], int(agent.get("streams", "1")))
        for section in config.sections():
            if section.startswith("watch "):
                values = config[section]
                rules.append(Rule(os.path.abspath(os.path.expanduser(section[len("watch "):].strip())),
                                  _transaction(values), values.get("per", FILE),
                                  seconds(values.get("quiet", "10s")), values.get("marker", "DONE")))
    if not options["url"]:
        raise SystemExit("pacifica-ingest-agent: give the service's --url (or url in [agent] of --config)")
    if not rules:
        raise SystemExit("pacifica-ingest-agent: name a directory to watch (or [watch DIR] sections in --config)")
    return options, rules


def _transaction(values: Any) -> dict[str, Any]:
    found = {key: values.get(key) for key in ("submitter", "project", "instrument") if values.get(key)}
    for key in ("submitter", "instrument"):
        if key in found and str(found[key]).isdigit():
            found[key] = int(found[key])
    return found


def _observers(rules: list[Rule], poll: bool, wake: threading.Event) -> list[Any]:
    """watchdog observers that wake the loop on any change (the sweep finds what changed)."""

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            wake.set()

    observers = []
    for rule in rules:
        if not os.path.isdir(rule.root):
            logger.warning("%s does not exist (yet); it is swept until it does", rule.root)
            continue
        observer = PollingObserver(timeout=2) if poll else Observer()
        observer.schedule(Wake(), rule.root, recursive=True)
        observer.start()
        observers.append(observer)
    return observers


def watch(args: argparse.Namespace) -> int:
    options, rules = _settings(args)
    journal = Journal(_journal_path(options["journal"]))
    service = Service(options["url"], options["token"], rate=options["rate"], streams=options["streams"])
    agent = Agent(rules, service, journal, prune=options["prune"], keep_free=options["keep_free"])
    stop = threading.Event()
    wake = threading.Event()
    def finish(*_args: Any) -> None:
        stop.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, finish)
    observers = [] if args.once else _observers(rules, options["poll"], wake)
    tick = max(0.2, min(1.0, min(rule.quiet for rule in rules) / 4))
    bar = _progress_bar() if sys.stderr.isatty() else None
    logger.info("watching %s; journal %s", ", ".join(rule.root for rule in rules), journal.path)
    next_sweep = 0.0
    deadline = time.monotonic() + args.timeout if args.once and args.timeout else None
    try:
        while not stop.is_set():
            now = time.monotonic()
            if wake.is_set() or now >= next_sweep or agent.busy():
                wake.clear()
                agent.step(bar)
                next_sweep = now + options["sweep"]
            if args.once and not agent.busy():
                break
            if deadline is not None and time.monotonic() >= deadline:
                logger.error("gave up after %g s with work left: %s", args.timeout, journal.counts())
                return 1
            wake.wait(tick)
    finally:
        for observer in observers:
            observer.stop()
        journal.close()
    return 0


def _progress_bar():
    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\rsending [{'#' * filled}{'.' * (width - filled)}] {done / 1e6:.1f} of {total / 1e6:.1f} MB")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def status(args: argparse.Namespace) -> int:
    path = _journal_path(args.journal)
    if not os.path.exists(path):
        sys.stderr.write(f"no journal at {path}: the agent has not run here\n")
        return 1
    journal = Journal(path)
    try:
        bundles = journal.bundles()
        rows: list[dict[str, Any]] = [
            {"bundle": bundle.id, "name": bundle.name, "root": bundle.root, "state": bundle.state,
             "files": len(bundle.files), "bytes": bundle.length, "sent_bytes": bundle.sent_bytes,
             "job_id": bundle.job_id, "error": bundle.error,
             "updated": datetime.datetime.fromtimestamp(bundle.updated, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")}
            for bundle in bundles]
        if args.as_json:
            sys.stdout.write(json.dumps({"counts": journal.counts(), "bundles": rows}, indent=2) + "\n")
            return 0
        counts = journal.counts()
        sys.stdout.write("bundles: " + (", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
                                        or "none yet") + "\n")
        for row in rows:
            progress = f" {100 * row['sent_bytes'] / row['bytes']:.0f}%" if row["state"] == "sending" else ""
            job = f" job {row['job_id']}" if row["job_id"] else ""
            why = f": {row['error']}" if row["error"] and row["state"] == "failed" else ""
            sys.stdout.write(f"{row['bundle']}\t{row['state']}{progress}\t{row['name']}\t{row['files']} files, "
                             f"{row['bytes']} bytes{job}{why}\n")
    finally:
        journal.close()
    return 0


class JsonLines(logging.Formatter):
    """One JSON object a line (``PACIFICA_AGENT_LOG_FORMAT=json``), for a log collector."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command of the agent."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("PACIFICA_AGENT_LOG_FORMAT", "text") == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return watch(args) if args.command == "watch" else status(args)


if __name__ == "__main__":
    sys.exit(main())
