"""Turn a ``peewee_url`` into a peewee database, without connecting."""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import peewee
from playhouse import db_url
from playhouse.pool import PooledDatabase

from .errors import ConfigError

logger = logging.getLogger(__name__)

# peewee 4 dropped the "ext" schemes; the published default URL is sqliteext:///db.sqlite3.
for _scheme, _target in (("sqliteext", "sqlite"), ("sqliteext+pool", "sqlite+pool")):
    db_url.schemes.setdefault(_scheme, db_url.schemes[_target])

# Several processes (web, workers, CLI) share one SQLite file: WAL lets readers run during a
# write, and the busy timeout makes a writer wait for the lock instead of failing at once.
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 30000, "synchronous": "normal"}

# A server database is reached through a pool of at most this many connections per process
# (``?max_connections=N`` in the URL changes it): the web server has dozens of request threads,
# and a connection held by each would exhaust the server's connection limit.
POOL_DEFAULTS = {"max_connections": 8, "stale_timeout": 300, "timeout": 30}


def make_database(url: str) -> peewee.Database:
    """Build (but do not open) the database named by ``url``; ``ConfigError`` if it is not usable."""
    scheme = url.split(":", 1)[0]
    if scheme not in db_url.schemes:
        raise ConfigError(f"[database] peewee_url: unsupported scheme {scheme!r} "
                          f"(use one of {', '.join(sorted(db_url.schemes))})")
    params: dict = {}
    pooled = f"{scheme}+pool"
    if not scheme.startswith("sqlite") and not scheme.endswith("+pool") and pooled in db_url.schemes:
        url = pooled + url[len(scheme):]
        given = parse_qs(urlparse(url).query)
        params.update({key: value for key, value in POOL_DEFAULTS.items() if key not in given})
    if scheme.startswith("sqlite"):
        params["pragmas"] = SQLITE_PRAGMAS
    elif scheme.startswith("mysql"):
        # Report rows matched, not rows changed, so "UPDATE ... else INSERT" works on MySQL too.
        from pymysql.constants import CLIENT  # noqa: PLC0415 - optional: installed only for MySQL

        params["client_flag"] = CLIENT.FOUND_ROWS
    try:
        database = db_url.connect(url, **params)  # also checks the URL and its parameters
        if isinstance(database, PooledDatabase):
            database = _recently_checked(type(database))(**db_url.parseresult_to_dict(urlparse(url)), **params)
        return database
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"[database] peewee_url {url!r}: {exc}") from None


class RecentlyCheckedPool(PooledDatabase):
    """A peewee pool that hands out a connection given back moments ago without checking it first.

    peewee checks every connection it takes from the pool with a round trip (``SELECT 1`` on
    PostgreSQL, a ping on MySQL), which doubled the work of a ``get_state``. A connection given
    back less than ``RECHECK_AFTER`` seconds ago is trusted instead; if it died meanwhile, its next
    query fails, and the caller drops it (``discard``) as after any database error.
    """

    RECHECK_AFTER = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._given_back: dict[int, float] = {}

    def _is_closed(self, conn: Any) -> bool:
        given_back = self._given_back.pop(self.conn_key(conn), None)
        if given_back is not None and time.monotonic() - given_back < self.RECHECK_AFTER:
            return False
        return super()._is_closed(conn)

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        with self._pool_lock:
            super()._close(conn, close_conn)
            if not close_conn and any(pooled is conn for _, _, pooled in self._connections):
                self._given_back[self.conn_key(conn)] = time.monotonic()

    def _close_raw(self, conn: Any) -> None:
        self._given_back.pop(self.conn_key(conn), None)
        super()._close_raw(conn)


_CHECKED_POOLS: dict[type, type] = {}


def _recently_checked(pool_class: type) -> type:
    """``pool_class`` with ``RecentlyCheckedPool`` mixed in (one class per pool class)."""
    if pool_class not in _CHECKED_POOLS:
        _CHECKED_POOLS[pool_class] = type(pool_class.__name__, (RecentlyCheckedPool, pool_class), {})
    return _CHECKED_POOLS[pool_class]


def bind(proxy: peewee.DatabaseProxy, url: str, data_dir: str = "") -> None:
    """Point ``proxy`` at the database named by ``url`` (closing what it held), making
    ``data_dir`` first when the URL keeps its file there."""
    if data_dir and data_dir in url:
        os.makedirs(data_dir, exist_ok=True)
    if proxy.obj is not None and not proxy.obj.is_closed():
        proxy.obj.close()
    proxy.initialize(make_database(url))


def release(database: peewee.Database | None) -> None:
    """Give this thread's connection back to the pool (a database without a pool keeps it)."""
    if isinstance(database, PooledDatabase) and not database.is_closed():
        database.close()


def discard(database: peewee.Database | None) -> None:
    """Close this thread's connection for good (after an error it may be broken)."""
    if database is None or database.is_closed():
        return
    if isinstance(database, PooledDatabase):
        database.manual_close()
    else:
        database.close()


def connect_blocking(database: peewee.Database, attempts: int, wait: float) -> None:
    """Open ``database``, trying up to ``attempts`` times ``wait`` seconds apart.

    Only what may pass is tried again (a server refusing connections or starting up, a
    timeout). A database that does not exist, credentials it refuses or a file that cannot be
    opened fail at once. Either way the ``peewee.OperationalError`` says what to change: the
    setting, the database (without its password) and the cause.
    """
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            database.connect(reuse_if_open=True)
            return
        except peewee.OperationalError as exc:
            cause = _cause(exc)
            if permanent_failure(exc):
                raise peewee.OperationalError(f"cannot open the database {describe(database)}: {cause}; "
                                              f"check [database] peewee_url (PEEWEE_URL)") from None
            logger.warning("database connect attempt %d/%d failed: %s", attempt, attempts, cause)
            if attempt < attempts:
                time.sleep(wait)
    raise peewee.OperationalError(f"could not connect to the database {describe(database)} after {attempts} "
                                  f"attempts ({cause}); is it running? [database] peewee_url (PEEWEE_URL) names it, "
                                  f"connect_attempts and connect_wait say how long to wait")


# What a database answers when trying again cannot help: MySQL/MariaDB error codes (access
# denied, unknown database) and the words of PostgreSQL's and SQLite's refusals.
_PERMANENT_MYSQL_CODES = {1044, 1045, 1049, 1698}
_PERMANENT_WORDS = ("does not exist", "authentication failed", "no pg_hba.conf entry", "unable to open database file",
                    "invalid dsn", "password authentication", "access denied")


def permanent_failure(exc: BaseException) -> bool:
    """Whether a failure to connect will fail the same way however often it is tried."""
    for error in (exc, exc.__cause__, exc.__context__):
        if error is None:
            continue
        if error.args and isinstance(error.args[0], int) and error.args[0] in _PERMANENT_MYSQL_CODES:
            return True
        text = str(error).lower()
        if any(words in text for words in _PERMANENT_WORDS):
            return True
    return False


def _cause(exc: BaseException) -> str:
    """The driver's own words for ``exc``, on one line."""
    error = exc.__cause__ or exc
    if error.args and isinstance(error.args[0], int) and len(error.args) > 1:
        text = str(error.args[1])
    else:
        text = str(error) or error.__class__.__name__
    return " ".join(text.split())[:500]


def describe(database: peewee.Database) -> str:
    """Where ``database`` is, to name it in a message: a file's path, or a server database's
    ``scheme://user@host:port/name`` (never its password)."""
    if isinstance(database, peewee.DatabaseProxy) and database.obj is not None:
        database = database.obj
    if isinstance(database, peewee.SqliteDatabase):
        return str(database.database)
    params = dict(getattr(database, "connect_params", {}) or {})
    scheme = "mysql" if isinstance(database, peewee.MySQLDatabase) else "postgres"
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port")
    where = f"{host}:{port}" if port else str(host)
    return f"{scheme}://{user + '@' if user else ''}{where}/{database.database}"
