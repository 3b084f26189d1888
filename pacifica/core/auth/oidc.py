"""OIDC / JWT bearer tokens from the facility's identity provider, checked with PyJWT.

The issuer's discovery document names its JWKS; keys are cached and fetched again when a token
names an unknown ``kid``. Only asymmetric algorithms are accepted (never ``none``, never an HMAC
keyed with a public key), and ``exp``, ``nbf``, ``iss`` and ``aud`` are checked by PyJWT.
"""

from __future__ import annotations

import logging
import threading
import time

import jwt
import requests

logger = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA")
# How long the discovery document is trusted before it is read again (seconds).
DISCOVERY_TTL = 3600.0
TOKEN_LIMIT = 16 * 1024
REFRESH_COOLDOWN = 10.0


class OidcError(Exception):
    """A bearer token that does not prove who sent it; the message says why (for the 401)."""


class OidcVerifier:
    """Checks JWTs issued by ``issuer`` for ``audience`` and names their user by ``user_claim``."""

    def __init__(self, issuer: str, audience: str, user_claim: str = "preferred_username",
                 timeout: float = 10.0, leeway: float = 30.0) -> None:
        self.issuer = issuer
        self.audience = audience
        self.user_claim = user_claim or "sub"
        self.timeout = timeout
        self.leeway = leeway
        self._lock = threading.Lock()
        self._client: jwt.PyJWKClient | None = None
        self._fetched = 0.0
        self._failed = -REFRESH_COOLDOWN

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            now = time.monotonic()
            stale = self._client is None or now - self._fetched > DISCOVERY_TTL
            # A failed discovery is not tried again for REFRESH_COOLDOWN s: while the issuer is down,
            # each bearer token must not hold a thread (and this lock) for a whole timeout.
            if stale and now - self._failed >= REFRESH_COOLDOWN:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    answer = requests.get(url, timeout=self.timeout, allow_redirects=False)
                    answer.raise_for_status()
                    jwks_uri = answer.json()["jwks_uri"]
                except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                    logger.error("OIDC discovery at %s failed: %s", url, exc)
                    self._failed = time.monotonic()
                else:
                    # An unknown kid fetches the JWKS again at most every REFRESH_COOLDOWN s: a flood of
                    # made-up kids cannot turn this service into a flood of requests to the issuer.
                    self._client = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=300, timeout=self.timeout,
                                                   cooldown_duration=REFRESH_COOLDOWN)
                    self._fetched = time.monotonic()
            if self._client is None:  # an old client, if any, serves on while discovery fails
                raise OidcError("the identity provider could not be asked for its keys")
            return self._client

    def verify(self, token: str) -> str:
        """The user the token names; ``OidcError`` if it is not a valid token of the issuer."""
        if len(token) > TOKEN_LIMIT:
            raise OidcError("the bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("the bearer token is not a JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise OidcError(f"the token's algorithm {str(header.get('alg'))[:20]!r} is not accepted")
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientError as exc:
            logger.info("OIDC key lookup failed: %s", exc)
            raise OidcError("the token was not signed by a key of the identity provider") from None
        try:
            claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise OidcError(f"the token is not valid: {exc}") from None
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user or len(user) > 255:
            raise OidcError(f"the token has no {self.user_claim} claim naming a user")
        return user
