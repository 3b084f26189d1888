"""OIDC bearer tokens from a local issuer (discovery and JWKS over HTTP, keys made here): valid
RS256 and ES256 tokens name their user; every forgery an attacker would try answers 401 with
WWW-Authenticate; a rotated key is found by its new kid."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.security.conftest import bearer
from tests.support.bundles import make_bundle
from tests.support.oidc_issuer import Issuer


@pytest.fixture
def issuer():
    made = Issuer()
    made.add_key("rsa-1", "RS256")
    made.add_key("ec-1", "ES256")
    yield made
    made.close()


def _unsigned(payload: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{part(payload)}."


def test_tokens_of_the_issuer_name_their_user_and_forgeries_are_refused(ingest, issuer, tmp_path):
    stack = ingest("oidc", sections={"auth": {"issuer": issuer.url, "audience": "pacifica"}})
    path = tmp_path / "b.tar"
    make_bundle(str(path), {"data/a.txt": b"a"})
    for kid in ("rsa-1", "ec-1"):
        token = issuer.token(kid, user=f"alice-{kid}")
        sent = requests.post(stack.url + "/upload", data=path.read_bytes(), headers=bearer(token), timeout=30)
        assert sent.status_code == 200, sent.text
        stack.headers = bearer(token)
        assert stack.wait_complete(sent.json()["job_id"])["state"] == "OK"
        page = requests.get(f"{stack.url}/jobs/{sent.json()['job_id']}", headers=bearer(token), timeout=10)
        assert f"user alice-{kid}" in page.text
        other = issuer.token(kid, user="mallory")
        assert requests.get(stack.url + "/get_state", params={"job_id": sent.json()["job_id"]},
                            headers=bearer(other), timeout=10).status_code == 404
    _algorithm, rsa_key = issuer.keys["rsa-1"]
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    stranger = Issuer()
    stranger.add_key("rsa-1", "RS256")
    now = int(time.time())
    forged = {
        "expired": issuer.token("rsa-1", lifetime=-120),
        "not yet valid": issuer.token("rsa-1", nbf=now + 600),
        "wrong audience": issuer.token("rsa-1", audience="another-client"),
        "wrong issuer": issuer.token("rsa-1", iss="http://127.0.0.1:1"),
        "wrong key": stranger.token("rsa-1"),
        "unknown kid": stranger.token("rsa-9"),
        "alg none": _unsigned({"iss": issuer.url, "aud": "pacifica", "preferred_username": "root",
                               "exp": now + 300}),
        "HS256 keyed with the public key": _hs256_with(public_pem, issuer.url, now),
        "no user claim": issuer.token("rsa-1", preferred_username=None),
        "not a JWT": "eyJhbGciOi.broken",
    }
    stranger.close()
    for case, token in forged.items():
        answer = requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(token), timeout=10)
        assert answer.status_code == 401, (case, answer.status_code, answer.text)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer"), case
        assert "invalid_token" in answer.headers["WWW-Authenticate"], case


def _hs256_with(secret: bytes, issuer: str, now: int) -> str:
    """The classic confusion: HMAC keyed with the issuer's public key. PyJWT refuses to make it
    with a PEM key, so it is made by hand with hmac, as an attacker would."""
    import hashlib
    import hmac

    def part(value: dict) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing = part({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}) + b"." + part(
        {"iss": issuer, "aud": "pacifica", "preferred_username": "root", "exp": now + 300})
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + signature).decode()


def test_a_rotated_key_is_fetched_by_its_new_kid(ingest, issuer):
    stack = ingest("rotate", sections={"auth": {"issuer": issuer.url, "audience": "pacifica"}})
    first = issuer.token("rsa-1")
    assert requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(first),
                        timeout=10).status_code == 404
    fetched = issuer.requests.count("/jwks")
    issuer.add_key("rsa-2", "RS256")
    time.sleep(11)  # an unknown kid fetches the keys again at most every 10 s
    rotated = issuer.token("rsa-2", user="bob")
    assert requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(rotated),
                        timeout=10).status_code == 404, "a token signed with the new key was refused"
    assert issuer.requests.count("/jwks") == fetched + 1
    # Known keys are cached: another token of the same key asks nothing.
    assert requests.get(stack.url + "/get_state", params={"job_id": 1}, headers=bearer(issuer.token("rsa-2")),
                        timeout=10).status_code == 404
    assert issuer.requests.count("/jwks") == fetched + 1


def test_an_issuer_without_an_audience_is_refused_at_start(tmp_path):
    from tests.conftest import embedded_stack

    stack = embedded_stack("noaud", tmp_path / "noaud")
    stack.settings["auth"] = {"issuer": "http://127.0.0.1:9"}
    stack.write_config()
    ran = stack.cmd("dbchk")
    assert ran.returncode == 2 and "audience" in ran.stderr


def test_pyjwt_itself_refuses_hs256_with_a_public_key():
    """Why the hand-made HS256 token above is the only way to make one: the library says no."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"a": 1}, pem, algorithm="HS256")
