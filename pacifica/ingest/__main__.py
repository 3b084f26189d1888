"""Command line entry points: ``pacifica-ingest`` (the server) and ``pacifica-ingest-cmd`` (admin)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import getpass
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, cast

import peewee

from ..core.auth.cli import add_token_commands, run_token_command
from ..core.auth.sealing import Sealer
from ..core.database import connect_blocking
from ..core.logs import configure_logging
from ..core.memory import limit_heap_growth
from ..core.settings import parse_duration, parse_rate
from ..core.terminal import Progress, progress_bar
from ..core.version import __version__
from ..core.web import EXIT_PORT_IN_USE, PortUnavailable, SecondServer, serve
from .app.bootstrap import announce, check_schema, configure
from .app.bootstrap import runtime as configured_runtime
from .app.server import compose
from .common import environment as ingest_globals
from .common import states
from .common.errors import ConfigError, PeerError
from .common.settings import load_settings
from .db import archived, migrations, models, s3keys
from .db import quotas as quota_holds
from .db.responses import event_response
from .jobs import actions, fixity, quotas
from .jobs.housekeeping import expire_failed_bundles, expire_uploads, stalled_jobs
from .jobs.runtime import Runtime
from .peers.base import ListingMetadataPort, ReadableMetadataPort
from .web.resources import SERVER_DEFAULTS
from .web.s3.door import make_s3_app
from .web.uploads import store

logger = logging.getLogger(__name__)


SERVER_EXITS = ("exit status:\n  0  stopped (SIGTERM, SIGINT)\n  2  the configuration or the database cannot be "
                "used (the message names the setting)\n  3  the address and port cannot be had (in use, or "
                "not allowed)")
CMD_EXITS = ("exit status:\n  0  done (or nothing to do, and it says so)\n  1  the job failed, or does not "
             "exist\n  2  a wrong argument, or the configuration or database cannot be used\n"
             "  255  dbchk: the schema is not usable by this code")


def _server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-ingest", description="Run the ingest server.",
                                     epilog="example:\n  pacifica-ingest -a 127.0.0.1 -p 8066 -c config.ini\n\n"
                                     + SERVER_EXITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--cp-config", "--cpconfig", dest="cpconfig", metavar="CPCONFIG", default=None,
                        help="cherrypy config file (default: INGEST_CPCONFIG or ~/.pacifica-ingest/cpconfig.ini)")
    parser.add_argument("-c", "--config", dest="config", metavar="CONFIG", default=None,
                        help="ingest config file (default: INGEST_CONFIG or ~/.pacifica-ingest/config.ini)")
    parser.add_argument("-p", "--port", dest="port", type=int, default=None, help="port to listen on (8066)")
    parser.add_argument("-a", "--address", dest="address", default=None,
                        help="address to listen on (the cherrypy config file's, else 127.0.0.1)")
    parser.add_argument("--s3-port", dest="s3_port", type=int, default=None,
                        help="also serve the S3 door on this port ([s3] port, INGEST_S3_PORT; default: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ingest server with CherryPy's built-in HTTP server."""
    args = _server_parser().parse_args(argv)
    configure_logging()
    limit_heap_growth()
    try:
        rt = configure(load_settings(args.config))
        settings = rt.settings
        check_schema(settings)
    except (ConfigError, peewee.PeeweeException) as exc:
        sys.stderr.write(f"pacifica-ingest: {one_line(exc)}\n")
        return 2
    announce(settings)
    if rt.auth is not None and rt.auth.protected():
        logger.warning(rt.auth.protected_message())
    cpconfig = args.cpconfig or ingest_globals.cherrypy_config()
    if args.cpconfig and not os.path.exists(args.cpconfig):
        sys.stderr.write(f"pacifica-ingest: cherrypy config file not found: {args.cpconfig}\n")
        return 2
    cpconfig = cpconfig if os.path.exists(cpconfig) else None
    s3_port = args.s3_port if args.s3_port is not None else settings.s3_port
    seconds = (SecondServer(lambda: make_s3_app(rt), settings.s3_address or args.address or "127.0.0.1", s3_port,
                            settings.s3_certificate, settings.s3_private_key),) if s3_port else ()
    try:
        serve(lambda: compose(rt, cpconfig),
              {**SERVER_DEFAULTS, "server.socket_host": "127.0.0.1", "server.socket_port": 8066},
              cpconfig, args.address, args.port, settings.trusted_proxies, seconds)
    except PortUnavailable as exc:
        sys.stderr.write(f"pacifica-ingest: {exc}\n")
        return EXIT_PORT_IN_USE
    return 0


def _cmd_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-ingest-cmd", description="Admin command line tool.",
                                     epilog="examples:\n  pacifica-ingest-cmd jobs --state FAILED\n"
                                     "  pacifica-ingest-cmd retry --job-id 17\n"
                                     "  pacifica-ingest-cmd job --job-id 17 --state FAILED --task 'ingest files'\n\n"
                                     + CMD_EXITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", dest="config", metavar="CONFIG", default=None,
                        help="ingest config file")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

    job = sub.add_parser("job", help="set the state of a job", description="Set the state of a job "
                         "(for example fail a stuck one).")
    job.add_argument("--job-id", "--job_id", dest="job_id", type=int, required=True, help="the job to change")
    job.add_argument("--state", dest="state", help=f"the new state ({states.OK} or {states.FAILED})")
    job.add_argument("--task", dest="task", help="the new task (stage) name")
    job.add_argument("--task-percent", dest="task_percent", type=float, help="the new percent, 0 to 100")
    job.add_argument("--exception", dest="exception", help="the new exception text")
    job.add_argument("--operator", dest="operator", default=getpass.getuser(),
                     help="who is doing this, recorded in the job (default: you)")
    job.set_defaults(func=_cmd_job)

    sub.add_parser("dbsync", help="create or upgrade the database",
                   description="Update or Create the Database.").set_defaults(func=_cmd_dbsync)

    dbchk = sub.add_parser("dbchk", help="check the database schema version",
                           description="Check database against current version: exit 0 if usable "
                           "(with --equal: if exactly current), 255 otherwise (then run dbsync).")
    dbchk.add_argument("--equal", default=False, dest="check_equal", action="store_true",
                       help="require the exact current version")
    dbchk.set_defaults(func=_cmd_dbchk)

    retry = sub.add_parser("retry", help="run a job again from its bundle (or move document) on the volume",
                           description="Run a job's stages again in this process: an existing job from what it "
                           "left on the volume (--job-id), or a new one from a file (--path).",
                           epilog="examples:\n  pacifica-ingest-cmd retry --job-id 17\n"
                           "  pacifica-ingest-cmd retry --path /data/bundle.tar --username alice\n\n" + CMD_EXITS,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    retry.add_argument("--job-id", "--job_id", dest="job_id", type=int, default=None,
                       help="the job to run again; without --path its bundle is found on the volume "
                       "(without --job-id: a new job)")
    retry.add_argument("--path", dest="file_path", default=None,
                       help="the tar bundle (or, with --move, the move document) to run")
    retry.add_argument("--move", default=False, dest="move", action="store_true",
                       help="the file is a move document, not a tar bundle")
    retry.add_argument("--username", dest="username", default=None,
                       help="user the policy checks (default: the job's submitter, else you)")
    retry.add_argument("--operator", dest="operator", default=getpass.getuser(),
                       help="who is doing this, recorded in the job (default: you)")
    retry.set_defaults(func=_cmd_retry)

    jobs = sub.add_parser("jobs", help="list recent jobs",
                          description="List the jobs changed last, newest first: id, state, task, percent, "
                          "last change (UTC), submitter.",
                          epilog="examples:\n  pacifica-ingest-cmd jobs --state FAILED --limit 5\n"
                          "  pacifica-ingest-cmd jobs --stalled 60      # unfinished, unchanged for an hour\n\n"
                          + CMD_EXITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_argument("--state", dest="state", choices=(states.OK, states.FAILED), help="only jobs in this state")
    jobs.add_argument("--user", dest="user", help="only the jobs of this submitter")
    jobs.add_argument("--stalled", dest="stalled", type=float, default=None, metavar="MINUTES",
                      help="only unfinished jobs not changed for this many minutes (stuck ones), oldest first")
    jobs.add_argument("--limit", dest="limit", type=int, default=20, help="at most this many (default: 20)")
    jobs.set_defaults(func=_cmd_jobs)

    cleanup = sub.add_parser("cleanup", help="remove expired failed bundles and resumable uploads",
                             description="Remove the bundles of jobs that failed longer ago than "
                             "[ingest] failed_retention hours, and resumable uploads that received "
                             "nothing for [ingest] upload_expiry hours (the server also does this).")
    cleanup.set_defaults(func=_cmd_cleanup)

    history = sub.add_parser("history", help="print every state change of a job",
                             description="Print a job's history, oldest first: time (UTC), state, task, "
                             "percent, operator (for admin commands) and message.")
    history.add_argument("--job-id", "--job_id", dest="job_id", type=int, required=True, help="the job")
    history.add_argument("--json", dest="as_json", action="store_true", help="print JSON instead of lines")
    history.add_argument("--fixity", dest="fixity", action="store_true",
                         help="print the fixity checks of the job's files instead: time, file, algorithm, "
                         "expected, found, outcome")
    history.set_defaults(func=_cmd_history)

    metadata = sub.add_parser("metadata", help="print the metadata the embedded metadata service stored",
                              description="Print a job's metadata document as JSON (embedded metadata only).")
    metadata.add_argument("--job-id", "--job_id", dest="job_id", type=int, required=True, help="the job")
    metadata.set_defaults(func=_cmd_metadata)

    audit = sub.add_parser("fixity", help="check archived files against their digests (a fixity audit)",
                            description="Read archived files back from the archive, hash them and compare with "
                            "the digests declared when they were ingested; print a report (every failure with "
                            "its path and both digests) and keep each check in the job's history.",
                            epilog="examples:\n  pacifica-ingest-cmd fixity --all\n"
                            "  pacifica-ingest-cmd fixity --older-than 90d --rate 50MB/s --json\n"
                            "  pacifica-ingest-cmd fixity --job-id 17\n"
                            "  pacifica-ingest-cmd fixity --backfill      # record jobs archived before the record\n\n"
                            "exit status:\n  0  every file checked is whole\n  1  a file failed its check or is "
                            "missing\n  2  a wrong argument, the configuration or database cannot be used, or the "
                            "archive could not be reached (the audit stopped)",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    which = audit.add_mutually_exclusive_group(required=True)
    which.add_argument("--job-id", "--job_id", dest="job_id", type=int, help="the files of this job")
    which.add_argument("--all", dest="everything", action="store_true", help="every archived file")
    which.add_argument("--older-than", dest="older_than", metavar="AGE",
                       help="the files not found whole for AGE (90d, 12h, 30m)")
    which.add_argument("--backfill", dest="backfill", action="store_true",
                       help="record the files of jobs completed before the record existed, from the metadata "
                       "service, and check nothing")
    audit.add_argument("--rate", dest="rate", default=None, metavar="RATE",
                        help="read at most this fast (50MB/s; 0: no limit; default: [fixity] rate)")
    audit.add_argument("--include-tape", dest="include_tape", action="store_true", default=None,
                        help="read files the archive keeps on tape too (recalls them)")
    audit.add_argument("--json", dest="as_json", action="store_true", help="print the report as JSON")
    audit.set_defaults(func=_cmd_fixity)

    quota = sub.add_parser("quota", help="set, show, list or remove quotas (bytes, files, uploads at once)",
                           description="Quotas of a user, a project or an instrument: bytes and files archived "
                           "(in total, or within a rolling --period), and for a user the uploads receiving bytes "
                           "at once. Uploads over a quota are refused before a byte is stored (413, or 429 with "
                           "Retry-After), and a job whose real sizes are over it fails before its files are "
                           "archived.",
                           epilog="examples:\n  pacifica-ingest-cmd quota set --project 1234a --bytes 1TB\n"
                           "  pacifica-ingest-cmd quota set --user alice --bytes 200GiB --files 100000 --uploads 4\n"
                           "  pacifica-ingest-cmd quota set --instrument 54 --bytes 5TB --period 30d\n"
                           "  pacifica-ingest-cmd quota set --user alice --files none   # no file limit\n"
                           "  pacifica-ingest-cmd quota show --user alice\n  pacifica-ingest-cmd quota list\n\n"
                           + CMD_EXITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    quota.add_argument("action", choices=("set", "show", "list", "remove"))
    whose = quota.add_mutually_exclusive_group()
    for scope in quota_holds.SCOPES:
        whose.add_argument(f"--{scope}", dest=scope, metavar="NAME", help=f"the quota of this {scope}")
    quota.add_argument("--bytes", dest="max_bytes", metavar="SIZE",
                       help="bytes (1TB, 200GiB, 1048576; none: no limit)")
    quota.add_argument("--files", dest="max_files", metavar="N", help="files (none: no limit)")
    quota.add_argument("--uploads", dest="max_uploads", metavar="N",
                       help="a user's uploads receiving bytes at once (none: no limit)")
    quota.add_argument("--period", dest="period", metavar="DURATION",
                       help="count bytes and files archived within this rolling window (30d; none: all)")
    quota.add_argument("--operator", dest="operator", default=getpass.getuser(),
                       help="who is doing this, recorded with the quota (default: you)")
    quota.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    quota.set_defaults(func=_cmd_quota)

    add_token_commands(sub, _cmd_token, lambda parser, func: parser.set_defaults(func=func), _s3_key_maker)
    return parser


def one_line(exc: BaseException) -> str:
    """Return an error's message on one line (database drivers like multi-line messages)."""
    return " ".join(str(exc).split())


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _cmd_job(args: argparse.Namespace, rt: Runtime) -> int:
    try:
        note = actions.set_state(args.job_id, args.operator, args.state, args.task, args.task_percent,
                                 args.exception)
    except actions.ActionRefused as exc:
        sys.stderr.write(f"{exc}\n")
        return 2 if exc.status == 400 else 1
    if note is None:
        row = models.read_state(args.job_id)
        _out(f"job {args.job_id}: nothing to change (it is {row.state} {row.task!r} {float(row.task_percent)}%); "
             "nothing was written")
        return 0
    _out(f"job {args.job_id} updated")
    return 0


def _cmd_jobs(args: argparse.Namespace, rt: Runtime) -> int:
    if args.stalled is not None:
        rows: Iterable[models.IngestState] = [row for row in stalled_jobs(args.stalled)
                                              if (args.state is None or row.state == args.state)
                                              and (args.user is None or row.submitter == args.user)][:args.limit]
    else:
        rows = models.recent_jobs(args.limit, state=args.state, submitters=[args.user] if args.user else [])
    shown = 0
    for row in rows:
        shown += 1
        _out(f"{row.job_id}\t{row.state}\t{row.task}\t{float(row.task_percent)}\t{row.updated:%Y-%m-%d %H:%M:%S}"
             f"\t{row.submitter or '-'}")
    if not shown:
        sys.stderr.write("no jobs match\n")
    return 0


def _cmd_cleanup(args: argparse.Namespace, rt: Runtime) -> int:
    removed = expire_failed_bundles(rt.spool, rt.settings.failed_retention)
    _out(f"removed the bundles of {len(removed)} failed jobs")
    expired = expire_uploads(store(rt))
    _out(f"removed {len(expired)} expired resumable uploads")
    return 0


def _cmd_dbsync(args: argparse.Namespace, rt: Runtime) -> int:
    reached = migrations.upgrade(models.DB.obj)
    version = migrations.get_version(models.DB.obj)
    if reached:
        _out("upgraded to " + ", ".join(f"{major}.{minor}" for major, minor in reached))
    _out(f"schema version {version[0]}.{version[1]}")
    return 0


def _cmd_dbchk(args: argparse.Namespace, rt: Runtime) -> int:
    version = migrations.get_version(models.DB.obj)
    ok = version == migrations.LATEST if args.check_equal else migrations.is_safe(version)
    verdict = "ok" if ok else "not " + ("equal" if args.check_equal else "safe")
    line = (f"schema version {version[0]}.{version[1]}, code version {migrations.LATEST[0]}."
            f"{migrations.LATEST[1]}: {verdict}")
    if not ok and version < migrations.LATEST:
        line += "; run pacifica-ingest-cmd dbsync to create or upgrade the schema"
    _out(line)
    return 0 if ok else -1


def _cmd_retry(args: argparse.Namespace, rt: Runtime) -> int:
    job_id, path, move, user = args.job_id, args.file_path, args.move, args.username
    if path is None:
        if job_id is None:
            sys.stderr.write("give --job-id (to run a job again from the volume) or --path (a bundle)\n")
            return 2
        found = _left_on_volume(rt, job_id)
        if found is None:
            sys.stderr.write(f"job {job_id} left no bundle or move document on the volume "
                             f"({rt.spool.bundle_path(job_id)}); give --path\n")
            return 2
        path, move, stored_user = found
        user = user or stored_user
    elif not os.path.isfile(path):
        sys.stderr.write(f"no such file: {path}\n")
        return 2
    if job_id is None:
        job_id = rt.peers.uniqueid.reserve(1, "upload_job")
        _out(f"new job id {job_id}")
    if user is None:
        user = _submitter(job_id) or getpass.getuser()
    _out(f"job {job_id}: running {path} as {user}")
    # At a terminal, a bar shows how far the job is (a retry of many gigabytes takes minutes).
    bar = progress_bar(functools.partial(_progress_of, job_id), sys.stderr, done=_release_connection) \
        if sys.stdout.isatty() else contextlib.nullcontext()
    with bar:
        completed, row = actions.rerun(job_id, path, user, move, args.operator)
    _out(f"job {job_id}: {row.state} {row.task} {row.exception}".rstrip())
    return 0 if completed else 1


def _progress_of(job_id: int) -> Progress | None:
    """Job ``job_id``'s stage and progress, for the bar of a long command."""
    try:
        row = models.read_state(job_id)
    except models.IngestState.DoesNotExist:
        return None
    return Progress(row.task, float(row.task_percent or 0), int(row.bytes_done or 0), int(row.bytes_total or 0))


def _release_connection() -> None:
    if models.DB.obj is not None and not models.DB.obj.is_closed():
        models.DB.obj.close()


def _left_on_volume(rt: Runtime, job_id: int) -> tuple[str, bool, str | None] | None:
    """What job ``job_id`` left on the volume to run again: (path, is a move, its user)."""
    message = rt.spool.read_job(job_id)
    if message is not None and os.path.isfile(message["path"]):
        return message["path"], bool(message.get("move", False)), message["user"]
    for path, move in ((rt.spool.bundle_path(job_id), False), (rt.spool.move_path(job_id), True)):
        if os.path.isfile(path):
            return path, move, _submitter(job_id)
    return None


def _submitter(job_id: int) -> str | None:
    try:
        return models.read_state(job_id).submitter
    except models.IngestState.DoesNotExist:
        return None


def _cmd_history(args: argparse.Namespace, rt: Runtime) -> int:
    if args.fixity:
        return _fixity_history(args)
    events = [event_response(event) for event in models.read_history(args.job_id)]
    if not events:
        sys.stderr.write(f"job {args.job_id} has no history (no such job, or it predates schema 2.2)\n")
        return 1
    if args.as_json:
        _out(json.dumps(events, indent=2))
        return 0
    for event in events:
        message = " ".join(event["message"].split())
        _out("\t".join([event["time"], event["state"], event["task"], event["task_percent"],
                        event["operator"] or "-", message]).rstrip())
    return 0


def _fixity_history(args: argparse.Namespace) -> int:
    checks: list[dict[str, Any]] = [
        {"time": f"{event.time:%Y-%m-%d %H:%M:%S}", "file_id": event.file_id, "algorithm": event.algorithm,
         "size": event.size, "expected": event.expected, "actual": event.actual, "outcome": event.outcome,
         "detail": event.detail} for event in archived.events_of(args.job_id)]
    if not checks:
        sys.stderr.write(f"job {args.job_id} has no fixity checks (none yet, or no such job)\n")
        return 1
    if args.as_json:
        _out(json.dumps(checks, indent=2))
        return 0
    for check in checks:
        _out("\t".join([check["time"], str(check["file_id"]), check["algorithm"], check["expected"],
                        check["actual"] or "-", check["outcome"], " ".join(check["detail"].split())]).rstrip())
    return 0


def _cmd_metadata(args: argparse.Namespace, rt: Runtime) -> int:
    if not rt.peers.metadata.readable:
        sys.stderr.write("metadata is kept by the metadata service at "
                         f"{rt.settings.metadata_url}, not here; ask it\n")
        return 2
    document = cast(ReadableMetadataPort, rt.peers.metadata).get(args.job_id)
    if document is None:
        sys.stderr.write(f"no metadata stored for job {args.job_id}\n")
        return 1
    _out(json.dumps(document, indent=2, sort_keys=True))
    return 0


def _cmd_fixity(args: argparse.Namespace, rt: Runtime) -> int:
    check_schema(rt.settings)
    if args.backfill:
        jobs, files = fixity.backfill(cast(ListingMetadataPort, rt.peers.metadata))
        _out(f"recorded {files} files of {jobs} jobs archived before the record")
        return 0
    try:
        rate = parse_rate(args.rate) if args.rate is not None else None
        before = models.utcnow() - datetime.timedelta(seconds=parse_duration(args.older_than)) \
            if args.older_than else None
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    rows = archived.walk_due(job_id=args.job_id, verified_before=before)
    report = fixity.audit(rows, rt.peers.archive, fixity.options_from(rt.settings, rate, args.include_tape))
    _out(json.dumps(report.as_dict(), indent=2) if args.as_json else report.as_text())
    if report.stopped:
        return 2
    return 0 if report.ok else 1


def _limit(text: str | None, parse) -> object:
    """A limit given on the command line: absent (keep it), ``none`` (remove it), or its value."""
    if text is None:
        return _KEEP
    if text.strip().lower() in ("none", "off", "-"):
        return None
    value = parse(text)
    if value < 0:
        raise ValueError(f"a limit cannot be negative: {text!r}")
    return int(value)


_KEEP = object()


def _cmd_quota(args: argparse.Namespace, rt: Runtime) -> int:
    check_schema(rt.settings)
    named = [(scope, getattr(args, scope)) for scope in quota_holds.SCOPES if getattr(args, scope)]
    if args.action == "list":
        rows = quotas.report([(row.scope, row.name) for row in quota_holds.everything()])
        _print_quotas(rows, args.as_json)
        return 0
    if not named:
        sys.stderr.write(f"quota {args.action}: name whose quota (--user, --project or --instrument)\n")
        return 2
    scope, name = named[0]
    if args.action == "remove":
        removed = quota_holds.remove(scope, name)
        _out(f"removed the {scope} quota of {name}" if removed else f"{scope} {name} has no quota; nothing removed")
        return 0
    if args.action == "set":
        try:
            limits = {"max_bytes": _limit(args.max_bytes, parse_rate), "max_files": _limit(args.max_files, int),
                      "max_uploads": _limit(args.max_uploads, int), "period": _limit(args.period, parse_duration)}
        except ValueError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        given = {key: value for key, value in limits.items() if value is not _KEEP}
        if not given:
            sys.stderr.write("quota set: give at least one of --bytes, --files, --uploads, --period\n")
            return 2
        if "max_uploads" in given and scope != quota_holds.USER:
            sys.stderr.write("--uploads is a limit of a user's uploads at once; give it with --user\n")
            return 2
        quota_holds.put(scope, name, args.operator, **given)
    _print_quotas(quotas.report([(scope, name)]), args.as_json)
    return 0


def _print_quotas(rows: list[dict], as_json: bool) -> None:
    if as_json:
        _out(json.dumps(rows, indent=2))
        return
    if not rows:
        sys.stderr.write("no quotas are set\n")
    for row in rows:
        limits = ", ".join(f"{label} {used} of {limit if limit is not None else 'no limit'}" for label, used, limit in (
            ("bytes", row["used_bytes"] + row["held_bytes"], row["max_bytes"]),
            ("files", row["used_files"] + row["held_files"], row["max_files"])))
        extra = f", uploads at once {row['uploading']} of {row['max_uploads'] or 'no limit'}" \
            if row["scope"] == quota_holds.USER else ""
        period = f" (within {row['period_seconds'] / 86400:g} days)" if row["period_seconds"] else ""
        _out(f"{row['scope']} {row['name']}: {limits}{extra}{period}; held by uploads in flight: "
             f"{row['held_bytes']} bytes")


def _cmd_token(args: argparse.Namespace, rt: Runtime) -> int:
    check_schema(rt.settings)  # a first token may come before the first start: the schema is made then
    if rt.auth is None or rt.auth.tokens is None:
        sys.stderr.write("this service keeps no tokens\n")
        return 2
    return run_token_command(args, rt.auth.tokens)


def _s3_key_maker(user: str, scopes: tuple[str, ...], expires: datetime.timedelta | None,
                  note: str) -> tuple[int, str, str]:
    """Make an S3 access key (``token create --s3``) with this process's runtime."""
    rt = configured_runtime()
    assert rt.auth is not None and rt.auth.tokens is not None
    return s3keys.create(rt.auth.tokens, Sealer(rt.settings.s3_key_file), user, scopes, expires, note)


def cmd(argv: Sequence[str] | None = None) -> int:
    """Run one admin subcommand; return its exit status."""
    args = _cmd_parser().parse_args(argv)
    configure_logging(logging.WARNING)
    try:
        rt = configure(load_settings(args.config))
        connect_blocking(models.DB, rt.settings.connect_attempts, rt.settings.connect_wait)
        return args.func(args, rt)
    except (ConfigError, PeerError, peewee.PeeweeException) as exc:
        sys.stderr.write(f"pacifica-ingest-cmd: {one_line(exc)}\n")
        return 2
    finally:
        if models.DB.obj is not None and not models.DB.obj.is_closed():
            models.DB.obj.close()


if __name__ == "__main__":
    sys.exit(main())
