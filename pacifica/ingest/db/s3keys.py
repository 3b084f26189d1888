"""The S3 door's access keys (schema 2.6): an access key id, the API token it belongs to, and
its secret, sealed (``core.auth.sealing``).

Each key is also an API token of its user (``token list`` shows it, ``token revoke`` ends it, its
expiry holds): the token's digest is that of the secret key, so the secret works nowhere else.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets

import peewee

from ...core.auth.sealing import Sealer
from ...core.auth.tokens import TokenStore
from . import migrations
from .models import DB, BaseModel

# An access key id: "PAC" and 17 characters of base32, 20 in all, as AWS's are.
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ACCESS_KEY_PREFIX = "PAC"


class IngestS3Key(BaseModel):
    """One S3 access key."""

    access_key = peewee.CharField(max_length=64, primary_key=True)
    token_id = peewee.BigIntegerField(index=True)
    sealed_secret = peewee.TextField()

    class Meta:
        table_name = migrations.S3_KEY_TABLE


@dataclasses.dataclass(frozen=True)
class S3Key:
    """A usable access key: whose it is, its scopes and its secret."""

    access_key: str
    token_id: int
    user: str
    scopes: tuple[str, ...]
    secret: str


def create(tokens: TokenStore, sealer: Sealer, user: str, scopes: tuple[str, ...],
           expires: datetime.timedelta | None = None, note: str = "") -> tuple[int, str, str]:
    """Make an access key for ``user``; return the token id, the access key id and the secret
    (shown once: only its sealed form is kept)."""
    access_key = ACCESS_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(17))
    with DB.atomic():
        token_id, secret = tokens.create(user, scopes, expires, note or f"S3 access key {access_key}")
        IngestS3Key.create(access_key=access_key, token_id=token_id, sealed_secret=sealer.seal(secret))
    return token_id, access_key, secret


def find(tokens: TokenStore, sealer: Sealer, access_key: str) -> S3Key | None:
    """The access key ``access_key`` if it exists and its token is unexpired and not revoked."""
    if len(access_key) > 64:
        return None
    row = IngestS3Key.get_or_none(IngestS3Key.access_key == access_key)
    if row is None:
        return None
    model = tokens.model
    token = model.get_or_none(model.token_id == row.token_id)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    if token is None or token.revoked is not None or (token.expires is not None and token.expires <= now):
        return None
    return S3Key(access_key, int(row.token_id), token.user, tuple(token.scopes.split(",")),
                 sealer.open(row.sealed_secret))
