"""API tokens: random secrets handed out once; the database keeps only their SHA-256 digest.

A token is 32 random bytes (``secrets``), so a plain digest is as strong as a salted one: there is
no dictionary to attack. Each row has its user, scopes, expiry and last use; ``revoke`` ends it.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Any

import peewee

PREFIX = "pac_"
SCOPES = ("upload", "read", "operate")
# A token's last use is written at most this often (seconds), not on every request.
LAST_USE_EVERY = 60.0


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def digest(secret: str) -> str:
    """The hex SHA-256 of a token: what the database keeps."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """``upload,read`` as a tuple of known scopes; ValueError naming an unknown one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, got {text!r}")
    return scopes


def parse_duration(text: str) -> datetime.timedelta:
    """``90d``, ``12h``, ``30m`` or a number of seconds; ValueError otherwise."""
    text = text.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        number = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90d, 12h or 3600)") from None
    if number <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return datetime.timedelta(seconds=number)


class ApiToken(peewee.Model):
    """An API token as a service keeps it: the digest of its secret (never the secret), its user,
    scopes and note, and when it was made, expires, was last used and was revoked. Each service
    has its own table (``token_model``)."""

    token_id = peewee.AutoField()
    digest = peewee.CharField(max_length=64, unique=True)
    user = peewee.CharField()
    scopes = peewee.CharField()
    note = peewee.CharField(default="")
    created = peewee.DateTimeField(default=_utcnow)
    expires = peewee.DateTimeField(null=True)
    last_used = peewee.DateTimeField(null=True)
    revoked = peewee.DateTimeField(null=True)


def token_model(database: peewee.DatabaseProxy | peewee.Database, table: str) -> type[ApiToken]:
    """The token model of a service: ``ApiToken`` in the table ``table``, bound to ``database``."""

    class ServiceToken(ApiToken):
        class Meta:
            table_name = table

    ServiceToken.bind(database)
    return ServiceToken


class TokenRecord:
    """What a verified token says: its id, user and scopes."""

    def __init__(self, token_id: int, user: str, scopes: tuple[str, ...]) -> None:
        self.token_id, self.user, self.scopes = token_id, user, scopes


class TokenStore:
    """The tokens of one service's database."""

    def __init__(self, model: type[ApiToken]) -> None:
        self.model = model
        self._last_use: dict[int, float] = {}
        self._any: tuple[float, bool] = (0.0, False)

    def create(self, user: str, scopes: tuple[str, ...], expires: datetime.timedelta | None = None,
               note: str = "") -> tuple[int, str]:
        """Make a token for ``user``; return its id and the secret (shown once, never stored)."""
        if not user or any(ord(char) < 32 for char in user):
            raise ValueError("a token needs a user name without control characters")
        secret = PREFIX + secrets.token_urlsafe(32)
        row = self.model.create(digest=digest(secret), user=user, scopes=",".join(scopes), note=note[:200],
                                expires=_utcnow() + expires if expires else None)
        return int(row.token_id), secret

    def rows(self) -> list[dict[str, Any]]:
        """Every token, newest first, without secrets."""
        return [{"id": row.token_id, "user": row.user, "scopes": row.scopes, "note": row.note,
                 "created": _text(row.created), "expires": _text(row.expires), "last_used": _text(row.last_used),
                 "revoked": _text(row.revoked)}
                for row in self.model.select().order_by(self.model.token_id.desc())]

    def revoke(self, token_id: int) -> bool:
        """End a token; False if there is no such token or it was revoked already."""
        return bool(self.model.update(revoked=_utcnow())
                    .where((self.model.token_id == int(token_id)) & self.model.revoked.is_null()).execute())

    def verify(self, secret: str) -> TokenRecord | None:
        """The token ``secret`` names, if it is known, unexpired and not revoked."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        wanted = digest(secret)
        row = self.model.get_or_none(self.model.digest == wanted)
        if row is None or not hmac.compare_digest(row.digest, wanted) or row.revoked is not None:
            return None
        if row.expires is not None and row.expires <= _utcnow():
            return None
        now = time.monotonic()
        if now - self._last_use.get(row.token_id, -LAST_USE_EVERY) >= LAST_USE_EVERY:
            self._last_use[row.token_id] = now
            self.model.update(last_used=_utcnow()).where(self.model.token_id == row.token_id).execute()
        return TokenRecord(int(row.token_id), row.user, tuple(row.scopes.split(",")))

    def any_active(self, cache_seconds: float = 5.0) -> bool:
        """Whether any token could be used now (cached for ``cache_seconds``: asked on every request)."""
        checked, answer = self._any
        now = time.monotonic()
        if now - checked < cache_seconds:
            return answer
        model = self.model
        answer = (model.select(model.token_id)
                  .where(model.revoked.is_null() & (model.expires.is_null() | (model.expires > _utcnow())))
                  .exists())
        self._any = (now, answer)
        return answer


def _text(value: datetime.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def create_table(database: peewee.Database, table: str) -> None:
    """Create the token table ``table`` as it was at its first version (ingest schema 2.4, cartd
    2.1): a migration step.

    A frozen copy of ``token_model``'s columns, as every migration step keeps: when the model
    gains a column, its own step adds it, and this one still makes the table it always made."""

    class ApiTokenV1(peewee.Model):
        token_id = peewee.AutoField()
        digest = peewee.CharField(max_length=64, unique=True)
        user = peewee.CharField()
        scopes = peewee.CharField()
        note = peewee.CharField(default="")
        created = peewee.DateTimeField(default=_utcnow)
        expires = peewee.DateTimeField(null=True)
        last_used = peewee.DateTimeField(null=True)
        revoked = peewee.DateTimeField(null=True)

        class Meta:
            table_name = table

    ApiTokenV1.bind(database)
    database.create_tables([ApiTokenV1], safe=True)
