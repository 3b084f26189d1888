"""Turn a ``peewee_url`` into a peewee database, without connecting."""

from __future__ import annotations

import logging
import time
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
        from pymysql.constants import CLIENT

        params["client_flag"] = CLIENT.FOUND_ROWS
    try:
        return db_url.connect(url, **params)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"[database] peewee_url {url!r}: {exc}") from None


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

    Raises ``peewee.OperationalError`` naming the number of attempts if it never succeeds.
    """
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            database.connect(reuse_if_open=True)
            return
        except peewee.OperationalError as exc:
            logger.warning("database connect attempt %d/%d failed: %s", attempt, attempts, exc)
            if attempt < attempts:
                time.sleep(wait)
    raise peewee.OperationalError(f"could not connect to the database after {attempts} attempts")
