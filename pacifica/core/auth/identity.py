"""Who a request comes from, decided the same way by both services.

In order: an ``Authorization`` header (an API token as Bearer or as the Basic password, or an
OIDC JWT); the identity header, believed only from a trusted proxy; then the anonymous user
(``default_user``), for loopback clients only unless ``allow_anonymous`` is set. While no
identity source is configured (no trusted proxy, no token, no issuer), the service is in
*protected mode*: anything but loopback gets 403 naming the settings that open it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .oidc import OidcError, OidcVerifier
from .tokens import PREFIX, SCOPES, TokenStore

logger = logging.getLogger(__name__)

ALL_SCOPES = frozenset(SCOPES)
REALM = "pacifica"


@dataclasses.dataclass(frozen=True)
class AuthSettings:
    """The settings that decide who a request is from."""

    auth_header: str = "X-Http-Authed-User"
    default_user: str = "root"
    trusted_proxies: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    allow_anonymous: bool = False
    issuer: str = ""
    audience: str = ""
    user_claim: str = "preferred_username"
    # The settings' names as this service spells them, for the messages that tell how to open it.
    section: str = "ingest"
    token_command: str = "pacifica-ingest-cmd token create"


@dataclasses.dataclass(frozen=True)
class Identity:
    """The user a request acts for, what it may do, and how that was established."""

    user: str
    scopes: frozenset[str]
    source: str  # token, oidc, proxy, header, anonymous
    operator: bool = False

    def may(self, scope: str) -> bool:
        """Whether this identity has ``scope``."""
        return scope in self.scopes


class AuthError(Exception):
    """A request that cannot be let in: its status, a message, and the challenge for a 401."""

    def __init__(self, status: int, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.challenge = status, message, challenge


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (the peer of the connection) is this machine; a UNIX socket is too."""
    if not address:
        return True  # a UNIX socket (uWSGI, a local proxy): only this machine reaches it
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def in_networks(address: str | None, networks: tuple[str, ...]) -> bool:
    """Whether ``address`` lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


class Authenticator:
    """Decides the ``Identity`` of each request of one service."""

    def __init__(self, settings: AuthSettings, tokens: TokenStore | None = None) -> None:
        self.settings = settings
        self.tokens = tokens
        self.oidc = OidcVerifier(settings.issuer, settings.audience, settings.user_claim) if settings.issuer else None

    # ---- configuration -------------------------------------------------------------------

    def has_tokens(self) -> bool:
        """Whether an API token exists that could be used (cached briefly)."""
        if self.tokens is None:
            return False
        try:
            return self.tokens.any_active()
        except Exception:
            logger.exception("could not ask the database for API tokens")
            return False

    def identities_configured(self) -> bool:
        """Whether any identity source is configured: a trusted proxy, a token or an issuer."""
        return bool(self.settings.trusted_proxies or self.oidc is not None or self.has_tokens())

    def protected(self) -> bool:
        """Protected mode: only loopback clients are served."""
        return not (self.settings.allow_anonymous or self.identities_configured())

    def protected_message(self) -> str:
        """What a refused client (and the start-up log) is told about protected mode."""
        s = self.settings
        return (f"protected mode: this service has no identity source configured, so it serves only "
                f"this machine (loopback). To open it set one of: [{s.section}] trusted_proxies (an "
                f"authenticating proxy), an API token ({s.token_command}), [auth] issuer and audience "
                f"(OIDC), or [{s.section}] allow_anonymous = true (a private network only)")

    # ---- requests ------------------------------------------------------------------------

    def authenticate(self, remote: str | None, headers: Mapping[str, str]) -> Identity:
        """The identity of a request from ``remote`` with ``headers``; ``AuthError`` to refuse it."""
        loopback = is_loopback(remote)
        if not loopback and self.protected():
            raise AuthError(403, self.protected_message())
        presented = self._credentials(headers.get("Authorization"))
        if presented is not None:
            return presented
        s = self.settings
        header_user = (headers.get(s.auth_header) or "").strip()
        if header_user and self._header_believed(remote, loopback):
            if len(header_user) > 255 or any(ord(char) < 32 for char in header_user):
                raise AuthError(400, f"the {s.auth_header} header is not a user name")
            return self._identity(header_user, ALL_SCOPES, "proxy")
        if header_user:
            logger.warning("ignoring %s from %s: not a trusted proxy", s.auth_header, remote)
        anonymous_ok = loopback or s.allow_anonymous or in_networks(remote, s.trusted_proxies)
        if anonymous_ok and s.default_user:
            return self._identity(s.default_user, ALL_SCOPES, "anonymous")
        raise AuthError(401, self._unauthenticated_message(), self.challenge())

    def _header_believed(self, remote: str | None, loopback: bool) -> bool:
        s = self.settings
        if s.trusted_proxies:
            return in_networks(remote, s.trusted_proxies)
        if s.allow_anonymous:
            return True  # the published service's behaviour, chosen explicitly for a private network
        # No proxy configured: the header is the local user's word, as it was in 0.4 (loopback only),
        # until tokens or OIDC make a stronger identity available.
        return loopback and self.oidc is None and not self.has_tokens()

    def _unauthenticated_message(self) -> str:
        s = self.settings
        ways = ["an API token (Authorization: Bearer, or as the Basic password)"]
        if self.oidc is not None:
            ways.append("an OIDC bearer token")
        if s.trusted_proxies:
            ways.append(f"the {s.auth_header} header from a trusted proxy")
        return "authentication required: send " + " or ".join(ways)

    def challenge(self, error: str | None = None) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        bearer = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
        return f'{bearer}, Basic realm="{REALM}"'

    def _credentials(self, authorization: str | None) -> Identity | None:
        """The identity an ``Authorization`` header proves; None when it carries none of ours."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(401, "the Basic credentials are not base64 of user:password",
                                self.challenge()) from None
            secret = decoded.partition(":")[2]
            if not secret.startswith(PREFIX):
                return None  # not one of our tokens: some other layer's password
            return self._token(secret)
        if scheme.lower() == "bearer":
            if value.startswith(PREFIX):
                return self._token(value)
            if self.oidc is None:
                raise AuthError(401, "the bearer token is not an API token of this service",
                                self.challenge("invalid_token"))
            try:
                user = self.oidc.verify(value)
            except OidcError as exc:
                raise AuthError(401, f"the bearer token was refused: {exc}", self.challenge("invalid_token")) from None
            return self._identity(user, frozenset({"upload", "read"}), "oidc")
        return None

    def _token(self, secret: str) -> Identity:
        record = self.tokens.verify(secret) if self.tokens is not None else None
        if record is None:
            raise AuthError(401, "the API token is unknown, expired or revoked", self.challenge("invalid_token"))
        identity = self._identity(record.user, frozenset(record.scopes), "token")
        return dataclasses.replace(identity, operator="operate" in record.scopes)

    def _identity(self, user: str, scopes: frozenset[str], source: str) -> Identity:
        return Identity(user, scopes, source, operator=user in self.settings.operators)


def build_authenticator(settings: Any, section: str, command: str, tokens: TokenStore) -> Authenticator:
    """The authenticator of a service from its typed settings (fields ``auth_header``,
    ``default_user``, ``trusted_proxies``, ``operators``, ``allow_anonymous``, ``auth_issuer``,
    ``auth_audience``, ``auth_user_claim``); ``section`` and ``command`` name its settings and its
    admin command in messages."""
    if settings.auth_issuer and not settings.auth_audience:
        raise ConfigError(f"[auth] issuer is set but audience is not ({section.upper()}_AUTH_AUDIENCE): a token "
                          "for any client of the identity provider would be accepted")
    return Authenticator(AuthSettings(
        auth_header=settings.auth_header, default_user=settings.default_user,
        trusted_proxies=settings.trusted_proxies, operators=settings.operators,
        allow_anonymous=settings.allow_anonymous, issuer=settings.auth_issuer,
        audience=settings.auth_audience, user_claim=settings.auth_user_claim,
        section=section, token_command=f"{command} token create"), tokens)
