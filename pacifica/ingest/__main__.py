"""Command line entry points: ``pacifica-ingest`` (the server) and ``pacifica-ingest-cmd`` (admin)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import cast

import peewee

from ..core.auth.cli import add_token_commands, run_token_command
from ..core.database import connect_blocking
from ..core.logs import configure_logging
from ..core.memory import limit_heap_growth
from ..core.web import serve
from .app.bootstrap import announce, check_schema, configure
from .app.server import compose
from .common import environment as ingest_globals
from .common import states
from .common.errors import ConfigError, PeerError
from .common.settings import load_settings
from .db import migrations, models
from .db.responses import event_response
from .jobs import actions
from .jobs.housekeeping import expire_failed_bundles, expire_uploads, stalled_jobs
from .jobs.runtime import Runtime
from .peers.base import ReadableMetadataPort
from .web.resources import SERVER_DEFAULTS
from .web.uploads import store

logger = logging.getLogger(__name__)


def _server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-ingest", description="Run the ingest server.")
    parser.add_argument("--cp-config", "--cpconfig", dest="cpconfig", metavar="CPCONFIG", default=None,
                        help="cherrypy config file (default: INGEST_CPCONFIG or ~/.pacifica-ingest/cpconfig.ini)")
    parser.add_argument("-c", "--config", dest="config", metavar="CONFIG", default=None,
                        help="ingest config file (default: INGEST_CONFIG or ~/.pacifica-ingest/config.ini)")
    parser.add_argument("-p", "--port", dest="port", type=int, default=None, help="port to listen on (8066)")
    parser.add_argument("-a", "--address", dest="address", default=None,
                        help="address to listen on (localhost)")
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
    serve(lambda: compose(rt, cpconfig),
          {**SERVER_DEFAULTS, "server.socket_host": "localhost", "server.socket_port": 8066},
          cpconfig, args.address, args.port, settings.trusted_proxies)
    return 0


def _cmd_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-ingest-cmd", description="Admin command line tool.")
    parser.add_argument("-c", "--config", dest="config", metavar="CONFIG", default=None,
                        help="ingest config file")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

    job = sub.add_parser("job", help="set the state of a job", description="Set the state of a job "
                         "(for example fail a stuck one).")
    job.add_argument("--job-id", dest="job_id", type=int, required=True, help="the job to change")
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
                           "(with --equal: if exactly current), non-zero otherwise.")
    dbchk.add_argument("--equal", default=False, dest="check_equal", action="store_true",
                       help="require the exact current version")
    dbchk.set_defaults(func=_cmd_dbchk)

    retry = sub.add_parser("retry", help="run an upload or move again from its file on the volume",
                           description="Retry a move or ingest from a local file, in this process.")
    retry.add_argument("--move", default=False, dest="move", action="store_true",
                       help="the file is a move document, not a tar bundle")
    retry.add_argument("--path", dest="file_path", required=True, help="path to the tar or json file")
    retry.add_argument("--username", dest="username", default=getpass.getuser(),
                       help="user the policy checks (default: you)")
    retry.add_argument("--job_id", "--job-id", dest="job_id", type=int, default=None,
                       help="job id to use (default: a new one)")
    retry.add_argument("--operator", dest="operator", default=getpass.getuser(),
                       help="who is doing this, recorded in the job (default: you)")
    retry.set_defaults(func=_cmd_retry)

    jobs = sub.add_parser("jobs", help="list jobs", description="List unfinished jobs whose state has not "
                          "changed for a while (stuck ones): id, state, task, percent, last update.")
    jobs.add_argument("--stalled", dest="stalled", type=float, required=True, metavar="MINUTES",
                      help="only jobs not updated for this many minutes")
    jobs.set_defaults(func=_cmd_jobs)

    cleanup = sub.add_parser("cleanup", help="remove expired failed bundles and resumable uploads",
                             description="Remove the bundles of jobs that failed longer ago than "
                             "[ingest] failed_retention hours, and resumable uploads that received "
                             "nothing for [ingest] upload_expiry hours (the server also does this).")
    cleanup.set_defaults(func=_cmd_cleanup)

    history = sub.add_parser("history", help="print every state change of a job",
                             description="Print a job's history, oldest first: time (UTC), state, task, "
                             "percent, operator (for admin commands) and message.")
    history.add_argument("--job-id", dest="job_id", type=int, required=True, help="the job")
    history.add_argument("--json", dest="as_json", action="store_true", help="print JSON instead of lines")
    history.set_defaults(func=_cmd_history)

    metadata = sub.add_parser("metadata", help="print the metadata the embedded metadata service stored",
                              description="Print a job's metadata document as JSON (embedded metadata only).")
    metadata.add_argument("--job-id", dest="job_id", type=int, required=True, help="the job")
    metadata.set_defaults(func=_cmd_metadata)

    add_token_commands(sub, _cmd_token, lambda parser, func: parser.set_defaults(func=func))
    return parser


def one_line(exc: BaseException) -> str:
    """Return an error's message on one line (database drivers like multi-line messages)."""
    return " ".join(str(exc).split())


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _cmd_job(args: argparse.Namespace, rt: Runtime) -> int:
    try:
        actions.set_state(args.job_id, args.operator, args.state, args.task, args.task_percent, args.exception)
    except actions.ActionRefused as exc:
        sys.stderr.write(f"{exc}\n")
        return 2 if exc.status == 400 else 1
    _out(f"job {args.job_id} updated")
    return 0


def _cmd_jobs(args: argparse.Namespace, rt: Runtime) -> int:
    for row in stalled_jobs(args.stalled):
        _out(f"{row.job_id}\t{row.state}\t{row.task}\t{float(row.task_percent)}\t{row.updated:%Y-%m-%d %H:%M:%S}")
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
    _out(f"schema version {version[0]}.{version[1]}, code version {migrations.LATEST[0]}."
         f"{migrations.LATEST[1]}: {'ok' if ok else 'not ' + ('equal' if args.check_equal else 'safe')}")
    return 0 if ok else -1


def _cmd_retry(args: argparse.Namespace, rt: Runtime) -> int:
    if not os.path.isfile(args.file_path):
        sys.stderr.write(f"no such file: {args.file_path}\n")
        return 2
    job_id = args.job_id
    if job_id is None:
        job_id = rt.peers.uniqueid.reserve(1, "upload_job")
        _out(f"new job id {job_id}")
    completed, row = actions.rerun(job_id, args.file_path, args.username, args.move, args.operator)
    _out(f"job {job_id}: {row.state} {row.task} {row.exception}".rstrip())
    return 0 if completed else 1


def _cmd_history(args: argparse.Namespace, rt: Runtime) -> int:
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


def _cmd_token(args: argparse.Namespace, rt: Runtime) -> int:
    check_schema(rt.settings)  # a first token may come before the first start: the schema is made then
    if rt.auth is None or rt.auth.tokens is None:
        sys.stderr.write("this service keeps no tokens\n")
        return 2
    return run_token_command(args, rt.auth.tokens)


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
