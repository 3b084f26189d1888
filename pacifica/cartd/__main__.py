"""Command line entry points of cartd: ``pacifica-cartd`` (the server) and ``pacifica-cartd-cmd`` (admin)."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata

import peewee

from ..core.auth.cli import add_token_commands, run_token_command
from ..core.auth.tokens import TokenStore
from ..core.database import connect_blocking, make_database
from ..core.errors import ConfigError
from ..core.logs import configure_logging
from ..core.memory import limit_heap_growth
from ..core.version import __version__
from ..core.web import EXIT_PORT_IN_USE, PortUnavailable, serve
from .app.bootstrap import check_schema, configure
from .app.server import compose
from .common import environment as cartd_globals
from .common.settings import load_settings
from .db import migrations, models
from .jobs.celery_app import CART_APP
from .volume.store import CartStore

logger = logging.getLogger(__name__)


def _server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-cartd", description="Run the cart server.",
                                     epilog="example:\n  pacifica-cartd -a 127.0.0.1 -p 8081 -c config.ini\n\n"
                                     "exit status:\n  0  stopped (SIGTERM, SIGINT)\n  2  the configuration or the "
                                     "database cannot be used (the message names the setting)\n  3  the address "
                                     "and port cannot be had (in use, or not allowed)",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", dest="config", metavar="CONFIG", default=None, help="cart config file")
    parser.add_argument("--cpconfig", "--cp-config", dest="cpconfig", metavar="CONFIG", default=None,
                        help="cherrypy config file")
    parser.add_argument("-p", "--port", dest="port", type=int, default=None,
                        help="port to listen on (the cherrypy config file's, else 8081)")
    parser.add_argument("-a", "--address", dest="address", default=None,
                        help="address to listen on (the cherrypy config file's, else 127.0.0.1)")
    return parser


def warn_of_the_published_package() -> None:
    """Say so when the published pacifica-cartd (0.x) is installed beside this code: both ship the
    ``pacifica.cartd`` package, and the one installed last has overwritten the other's files. (This
    code's own distribution is pacifica-cartd 1.x, or the working tree's pacifica-workspace.)"""
    try:
        version = metadata.version("pacifica-cartd")
    except metadata.PackageNotFoundError:
        return
    if not version.startswith("0."):
        return
    logger.warning("the published pacifica-cartd %s is installed in this environment too: it ships the same "
                   "pacifica.cartd package as this service; install one of them per virtualenv", version)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cart server with CherryPy's built-in HTTP server."""
    args = _server_parser().parse_args(argv)
    configure_logging()
    limit_heap_growth()
    warn_of_the_published_package()
    try:
        rt = configure(load_settings(args.config))
        check_schema(rt.settings)
    except (ConfigError, peewee.PeeweeException) as exc:
        sys.stderr.write(f"pacifica-cartd: {' '.join(str(exc).split())}\n")
        return 2
    if rt.auth is not None and rt.auth.protected():
        logging.getLogger(__name__).warning(rt.auth.protected_message())
    cpconfig = args.cpconfig or cartd_globals.cherrypy_config()
    cpconfig = cpconfig if os.path.exists(cpconfig) else None
    # As in 0.7.0: the file's address and port, unless -a / -p are given.
    try:
        serve(lambda: compose(rt, cpconfig),
              {"engine.autoreload.on": False, "server.socket_timeout": 300, "server.thread_pool": 32,
               "log.screen": True, "server.socket_host": "127.0.0.1", "server.socket_port": 8081},
              cpconfig, args.address, args.port, rt.settings.trusted_proxies)
    except PortUnavailable as exc:
        sys.stderr.write(f"pacifica-cartd: {exc}\n")
        return EXIT_PORT_IN_USE
    return 0


def _cmd_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacifica-cartd-cmd", description="Cartd admin command line tool.",
                                     epilog="example:\n  pacifica-cartd-cmd purge --time-ago '7 days ago'\n\n"
                                     "exit status:\n  0  done\n  2  a wrong argument, or the configuration or "
                                     "database cannot be used\n  255  dbchk: the schema is not usable by this code",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", dest="config", metavar="CONFIG", default=None, help="cart config file")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    sub.add_parser("dbsync", help="create or upgrade the database",
                   description="Update or Create the Database.").set_defaults(func=_cmd_dbsync)
    dbchk = sub.add_parser("dbchk", help="check the database schema version",
                           description="Exit 0 if the database is usable (with --equal: exactly current).")
    dbchk.add_argument("--equal", default=False, dest="check_equal", action="store_true",
                       help="require the exact current version")
    dbchk.set_defaults(func=_cmd_dbchk)
    purge = sub.add_parser("purge", help="delete carts not used for a while",
                           description="Delete every cart not used (created, changed or downloaded) "
                           "since a time ago, its files included.")
    purge.add_argument("--time-ago", dest="time_ago", type=time_ago, default=datetime.timedelta(days=180),
                       help='only carts older than this, e.g. --time-ago="7 days ago" (default 180 days)')
    purge.set_defaults(func=_cmd_purge)
    add_token_commands(sub, _cmd_token, lambda parser, func: parser.set_defaults(func=func))
    return parser


def _cmd_token(args: argparse.Namespace) -> int:
    check_schema(load_settings(args.config))  # a first token may come before the first start
    return run_token_command(args, TokenStore(models.CartToken))


def time_ago(text: str) -> datetime.timedelta:
    """Parse ``"<number> <unit> ago"`` (units of ``datetime.timedelta``: days, hours, minutes...)."""
    parts = text.split()
    try:
        if len(parts) != 3 or parts[2] not in ("ago", "after"):
            raise ValueError(text)
        return datetime.timedelta(**{parts[1]: float(parts[0])})
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f'expected e.g. "7 days ago", got {text!r}') from None


def _cmd_purge(args: argparse.Namespace) -> int:
    settings = configure(load_settings(args.config)).settings
    cutoff = datetime.datetime.now() - args.time_ago
    utils = CartStore(settings.volume_path, settings.lru_buffer_time, settings.lru_purge)
    stale = models.Cart.select().where(models.Cart.deleted_date.is_null(True) & (models.Cart.updated_date < cutoff))
    for cart in list(stale):
        utils.delete_cart_tasks(cart, CART_APP.control.revoke if cart.status != "ready" else None)
        utils.delete_cart_bundle(cart)
        _out(f"deleted cart {cart.cart_uid} ({cart.id}), last used {cart.updated_date:%Y-%m-%d %H:%M:%S}")
    return 0


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _cmd_dbsync(_args: argparse.Namespace) -> int:
    reached = migrations.SCHEMA.upgrade(models.DB.obj)
    version = migrations.SCHEMA.get_version(models.DB.obj)
    if reached:
        _out("upgraded to " + ", ".join(f"{major}.{minor}" for major, minor in reached))
    _out(f"schema version {version[0]}.{version[1]}")
    return 0


def _cmd_dbchk(args: argparse.Namespace) -> int:
    version = migrations.SCHEMA.get_version(models.DB.obj)
    ok = version == migrations.LATEST if args.check_equal else migrations.SCHEMA.is_safe(version)
    line = (f"schema version {version[0]}.{version[1]}, code version {migrations.LATEST[0]}.{migrations.LATEST[1]}: "
            f"{'ok' if ok else 'not ' + ('equal' if args.check_equal else 'safe')}")
    if not ok and version < migrations.LATEST:
        line += "; run pacifica-cartd-cmd dbsync to create or upgrade the schema"
    _out(line)
    return 0 if ok else -1


def cmd(argv: Sequence[str] | None = None) -> int:
    """Run one admin subcommand; return its exit status."""
    args = _cmd_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        settings = load_settings(args.config)
        if settings.data_dir in settings.peewee_url:
            os.makedirs(settings.data_dir, exist_ok=True)
        models.DB.initialize(make_database(settings.peewee_url))
        connect_blocking(models.DB, settings.connect_attempts, settings.connect_wait)
        return args.func(args)
    except (ConfigError, peewee.PeeweeException) as exc:
        sys.stderr.write(f"pacifica-cartd-cmd: {' '.join(str(exc).split())}\n")
        return 2
    finally:
        if models.DB.obj is not None and not models.DB.obj.is_closed():
            models.DB.obj.close()


if __name__ == "__main__":
    sys.exit(main())
