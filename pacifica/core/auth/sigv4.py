"""AWS Signature Version 4, as a server checks it: the header form, the presigned-URL form and the
signatures of ``aws-chunked`` chunks and trailers.

Only the standard library's HMAC-SHA256 and SHA-256 are used; this module builds the strings AWS
defines (canonical request, string to sign, signing key) and compares signatures in constant
time. What it is given comes from the request exactly as sent: the path and query as they were on
the request line (the client signed those, not a decoded form of them) and the raw headers.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Sequence

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING = (STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
# How far a request's time may be from ours (S3 allows 15 minutes).
MAX_SKEW = datetime.timedelta(minutes=15)
# The longest a presigned URL may live (S3: 7 days).
MAX_EXPIRES = 7 * 24 * 3600
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CREDENTIAL = re.compile(r"^([A-Za-z0-9]{16,128})/(\d{8})/([a-z0-9-]{1,40})/([a-z0-9]{1,20})/aws4_request$")
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """A request that does not prove who sent it, with the S3 error code to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Claim:
    """What a signed request says before its signature is checked: who, when, in which scope,
    which headers it signed, the payload hash it declared and its signature."""

    access_key: str
    date: str  # the request's time, YYYYMMDDTHHMMSSZ
    scope: str  # <date>/<region>/<service>/aws4_request
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    payload: str  # x-amz-content-sha256 (or UNSIGNED-PAYLOAD for a presigned URL)
    presigned: bool


@dataclasses.dataclass(frozen=True)
class Request:
    """A request as the signature covers it: method, path and query as sent, raw headers."""

    method: str
    path: str  # as on the request line, percent-encoded as the client sent it
    query: str  # the raw query string, without '?'
    headers: Sequence[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (several joined with commas, as SigV4 canonicalises them)."""
        values = [value for key, value in self.headers if key.lower() == name]
        return ",".join(values) if values else None

    def params(self) -> list[tuple[str, str]]:
        """The query's parameters, decoded, in order."""
        return urllib.parse.parse_qsl(self.query, keep_blank_values=True)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The key a day's signatures in one region and service are made with."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _encode(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def canonical_query(query: str, leave_out: str = "") -> str:
    """The query string as SigV4 signs it: each name and value encoded the one RFC 3986 way,
    sorted (``leave_out``: a parameter that is not signed, the presigned URL's signature)."""
    pairs = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        name, value = urllib.parse.unquote(name), urllib.parse.unquote(value)
        if name != leave_out:
            pairs.append((_encode(name), _encode(value)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _canonical_headers(request: Request, names: Sequence[str]) -> str:
    lines = []
    for name in names:
        value = request.header(name)
        if value is None:
            raise SignatureError("AccessDenied", f"the signed header {name!r} is not in the request")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def canonical_request(request: Request, claim: Claim) -> str:
    """The canonical request of ``request`` as ``claim`` signed it."""
    return "\n".join((
        request.method.upper(),
        request.path or "/",
        canonical_query(request.query, "X-Amz-Signature" if claim.presigned else ""),
        _canonical_headers(request, claim.signed_headers),
        ";".join(claim.signed_headers),
        claim.payload,
    ))


def string_to_sign(claim: Claim, canonical: str) -> str:
    """What the client signed: the algorithm, its time, its scope and the canonical request's hash."""
    return "\n".join((ALGORITHM, claim.date, claim.scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()))


def read_claim(request: Request) -> Claim | None:
    """The signature ``request`` carries, in its ``Authorization`` header or its query (a
    presigned URL); None when it carries none. ``SignatureError`` when one is malformed."""
    authorization = request.header("authorization")
    params = dict(request.params())
    if authorization is not None:
        return _header_claim(request, authorization)
    if "X-Amz-Algorithm" in params or "X-Amz-Signature" in params:
        return _query_claim(params)
    if "AWSAccessKeyId" in params and "Signature" in params:
        raise SignatureError("AccessDenied", "Signature Version 2 presigned URLs are not accepted: presign with "
                                             "SigV4 (boto3: Config(signature_version='s3v4'))")
    return None


def _scope(credential: str) -> tuple[str, str, str]:
    """The access key, date and region of a ``Credential``; ``SignatureError`` if malformed."""
    match = _CREDENTIAL.match(credential)
    if match is None:
        raise SignatureError("AuthorizationHeaderMalformed",
                             "the Credential must be <access key>/<YYYYMMDD>/<region>/s3/aws4_request")
    access_key, date, region, service = match.groups()
    if service != "s3":
        raise SignatureError("AuthorizationHeaderMalformed", f"the Credential's service must be s3, not {service!r}")
    return access_key, date, region


def _signed_headers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in text.split(";") if name.strip())
    if "host" not in names:
        raise SignatureError("AccessDenied", "the signature must cover the Host header")
    return names


def _header_claim(request: Request, authorization: str) -> Claim:
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme == "AWS":
        raise SignatureError("AccessDenied", "Signature Version 2 is not accepted: sign requests with SigV4")
    if scheme != ALGORITHM:
        raise SignatureError("AccessDenied", f"the Authorization header must be {ALGORITHM}")
    fields = {}
    for item in rest.split(","):
        key, _, value = item.strip().partition("=")
        fields[key] = value
    try:
        credential, names, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as exc:
        raise SignatureError("AuthorizationHeaderMalformed", f"the Authorization header has no {exc.args[0]}") from None
    access_key, day, region = _scope(credential)
    date = request.header("x-amz-date") or ""
    if not date:
        raise SignatureError("AccessDenied", "a signed request needs an X-Amz-Date header")
    payload = request.header("x-amz-content-sha256")
    if payload is None:
        raise SignatureError("InvalidRequest", "a signed request needs an x-amz-content-sha256 header")
    if payload not in (UNSIGNED, *STREAMING) and not _HEX64.match(payload):
        raise SignatureError("InvalidArgument", f"x-amz-content-sha256 {payload[:80]!r} is not supported")
    _check_day(date, day)
    return Claim(access_key, date, f"{day}/{region}/s3/aws4_request", region, _signed_headers(names),
                 signature.strip().lower(), payload, presigned=False)


def _query_claim(params: dict[str, str]) -> Claim:
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise SignatureError("AccessDenied", f"X-Amz-Algorithm must be {ALGORITHM}")
    try:
        credential, date = params["X-Amz-Credential"], params["X-Amz-Date"]
        names, signature = params["X-Amz-SignedHeaders"], params["X-Amz-Signature"]
    except KeyError as exc:
        raise SignatureError("AuthorizationQueryParametersError",
                             f"the presigned URL has no {exc.args[0]}") from None
    access_key, day, region = _scope(credential)
    _check_day(date, day)
    return Claim(access_key, date, f"{day}/{region}/s3/aws4_request", region, _signed_headers(names),
                 signature.strip().lower(), params.get("X-Amz-Content-Sha256", UNSIGNED), presigned=True)


def _check_day(date: str, day: str) -> None:
    if not date.startswith(day):
        raise SignatureError("AuthorizationHeaderMalformed",
                             f"the Credential's date {day} is not the request's date {date[:8]}")


def request_time(claim: Claim) -> datetime.datetime:
    """When the request says it was signed; ``SignatureError`` if it cannot be read."""
    try:
        return datetime.datetime.strptime(claim.date, _DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise SignatureError("AccessDenied", f"X-Amz-Date {claim.date[:40]!r} is not YYYYMMDDTHHMMSSZ") from None


def check_time(claim: Claim, params: dict[str, str], now: datetime.datetime | None = None) -> None:
    """Refuse a request signed too far from now, or a presigned URL that expired."""
    now = now or datetime.datetime.now(datetime.UTC)
    signed = request_time(claim)
    if claim.presigned:
        try:
            expires = int(params.get("X-Amz-Expires", ""))
        except ValueError:
            raise SignatureError("AuthorizationQueryParametersError", "X-Amz-Expires must be a number of seconds") \
                from None
        if not 0 < expires <= MAX_EXPIRES:
            raise SignatureError("AuthorizationQueryParametersError",
                                 f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds")
        if signed - MAX_SKEW > now:
            raise SignatureError("AccessDenied", "the presigned URL is not valid yet")
        if now > signed + datetime.timedelta(seconds=expires):
            raise SignatureError("AccessDenied", "Request has expired")
        return
    if abs(now - signed) > MAX_SKEW:
        raise SignatureError("RequestTimeTooSkewed",
                             "the difference between the request time and the server's time is too large")


def verify(request: Request, claim: Claim, secret: str) -> bytes:
    """Check ``claim``'s signature of ``request`` with the key's ``secret``; return the signing
    key (the chunks of a streaming body are signed with it). ``SignatureDoesNotMatch`` otherwise."""
    key = signing_key(secret, claim.scope.split("/", 1)[0], claim.region)
    expected = hmac.new(key, string_to_sign(claim, canonical_request(request, claim)).encode("utf-8"),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, claim.signature):
        raise SignatureError("SignatureDoesNotMatch",
                             "The request signature we calculated does not match the signature you provided. "
                             "Check your key and signing method.")
    return key


class ChunkSigner:
    """The expected signatures of a signed ``aws-chunked`` body: each chunk's signature chains
    from the one before, starting at the request's (the seed)."""

    def __init__(self, key: bytes, claim: Claim) -> None:
        self.key, self.claim = key, claim
        self.previous = claim.signature

    def _next(self, kind: str, digest: str) -> str:
        text = "\n".join((kind, self.claim.date, self.claim.scope, self.previous, *digest.split("\n")))
        self.previous = hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return self.previous

    def chunk(self, data_sha256: str) -> str:
        """The signature the next chunk, whose data has SHA-256 ``data_sha256``, must carry."""
        return self._next("AWS4-HMAC-SHA256-PAYLOAD", f"{EMPTY_SHA256}\n{data_sha256}")

    def trailer(self, trailer_lines: str) -> str:
        """The signature of the trailing headers (``name:value\\n`` each)."""
        return self._next("AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(trailer_lines.encode("utf-8")).hexdigest())

