"""A local OIDC issuer for tests: discovery and JWKS over HTTP on loopback, with keys the test
makes (RS256 and ES256), and tokens signed by PyJWT with them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class Issuer:
    """Serves ``/.well-known/openid-configuration`` and ``/jwks``; ``keys`` may be rotated."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, Any]] = {}
        self.requests: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [issuer.public_jwk(kid) for kid in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self, kid: str, algorithm: str) -> Any:
        """Make and publish a key: RS256 (RSA 2048) or ES256 (P-256)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256" \
            else ec.generate_private_key(ec.SECP256R1())
        self.keys[kid] = (algorithm, key)
        return key

    def public_jwk(self, kid: str) -> dict[str, Any]:
        algorithm, key = self.keys[kid]
        algo = jwt.algorithms.RSAAlgorithm if algorithm == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algo.to_jwk(key.public_key()))
        return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}

    def token(self, kid: str, audience: str = "pacifica", user: str = "alice", lifetime: float = 300,
              key: Any = None, algorithm: str | None = None, **claims: Any) -> str:
        """A token signed with key ``kid`` (or ``key``) for ``audience``, naming ``user``."""
        now = int(time.time())
        published_algorithm, published_key = self.keys.get(kid, (None, None))
        payload = {"iss": self.url, "aud": audience, "sub": f"id-{user}", "preferred_username": user,
                   "iat": now, "nbf": now - 1, "exp": now + lifetime, **claims}
        return jwt.encode(payload, key if key is not None else published_key,
                          algorithm=algorithm or published_algorithm, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
