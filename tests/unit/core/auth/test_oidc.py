"""While the identity provider is down, OIDC tokens are refused without asking it again for each:
a token must not hold a thread (and the discovery lock) for a whole timeout."""

from __future__ import annotations

import socket
import threading

import pytest

from pacifica.core.auth.oidc import OidcError, OidcVerifier


def test_a_failed_discovery_is_not_tried_again_for_every_token():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept():  # answers nothing: each discovery waits for its whole timeout
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    verifier = OidcVerifier(f"http://127.0.0.1:{listener.getsockname()[1]}", "pacifica", timeout=1.0)
    token = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ4In0.c2ln")
    try:
        with pytest.raises(OidcError):
            verifier.verify(token)
        assert len(accepted) == 1
        for _ in range(5):
            with pytest.raises(OidcError):
                verifier.verify(token)
        assert len(accepted) == 1, f"discovery was tried {len(accepted)} times for six tokens"
    finally:
        listener.close()
