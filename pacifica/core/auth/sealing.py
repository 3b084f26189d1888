"""Secrets the service must be able to read again (an S3 secret key signs with the secret itself,
so a digest cannot stand in for it), sealed before they reach the database.

Sealing is Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``: never our own crypto)
under a key kept in a file of its own, readable by the service's user only. A copy of the
database alone reveals no secret.
"""

from __future__ import annotations

import contextlib
import os

from cryptography.fernet import Fernet, InvalidToken


class SealError(Exception):
    """A sealed secret that cannot be opened (another key file, or a damaged value)."""


class Sealer:
    """Seals and opens secrets with the key in ``key_file``, made on first use (mode 0600)."""

    def __init__(self, key_file: str) -> None:
        self.key_file = key_file
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._read_or_make())
        return self._fernet

    def _read_or_make(self) -> bytes:
        with contextlib.suppress(FileNotFoundError), open(self.key_file, "rb") as handle:
            return handle.read().strip()
        os.makedirs(os.path.dirname(self.key_file) or ".", exist_ok=True)
        key = Fernet.generate_key()
        try:
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            with open(self.key_file, "rb") as handle:
                return handle.read().strip()
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return key

    def seal(self, secret: str) -> str:
        """``secret``, sealed (text, safe to store)."""
        return self._key().encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The secret ``sealed`` holds; ``SealError`` if this key file did not seal it."""
        try:
            return self._key().decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise SealError(f"a sealed secret cannot be opened with the key in {self.key_file}") from None
