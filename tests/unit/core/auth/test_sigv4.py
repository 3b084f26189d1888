"""SigV4 as the S3 door checks it, against AWS's own published examples and against an
independent signer (the AWS Common Runtime's, ``awscrt.auth``)."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from awscrt import auth, http

from pacifica.core.auth import sigv4

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_KEY = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


def _example(headers: list[tuple[str, str]], signed: str, signature: str, method: str = "GET",
             path: str = "/test.txt", query: str = "") -> tuple[sigv4.Request, sigv4.Claim]:
    authorization = (f"AWS4-HMAC-SHA256 Credential={EXAMPLE_KEY}/20130524/us-east-1/s3/aws4_request,"
                     f"SignedHeaders={signed},Signature={signature}")
    request = sigv4.Request(method, path, query, [*headers, ("Authorization", authorization)])
    claim = sigv4.read_claim(request)
    assert claim is not None
    return request, claim


def test_the_get_object_example_of_the_s3_documentation_verifies():
    request, claim = _example([("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
                               ("x-amz-content-sha256", sigv4.EMPTY_SHA256), ("x-amz-date", "20130524T000000Z")],
                              "host;range;x-amz-content-sha256;x-amz-date",
                              "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    sigv4.check_time(claim, {}, EXAMPLE_TIME)
    sigv4.verify(request, claim, EXAMPLE_SECRET)
    with pytest.raises(sigv4.SignatureError) as refused:
        sigv4.verify(request, claim, EXAMPLE_SECRET[:-1] + "X")
    assert refused.value.code == "SignatureDoesNotMatch"


def test_the_chunked_upload_example_of_the_s3_documentation_verifies_chunk_by_chunk():
    headers = [("Host", "s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
               ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("Content-Encoding", "aws-chunked"),
               ("x-amz-decoded-content-length", "66560"), ("Content-Length", "66824"),
               ("x-amz-content-sha256", sigv4.STREAMING_SIGNED)]
    request, claim = _example(headers, "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                              "x-amz-decoded-content-length;x-amz-storage-class",
                              "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9", method="PUT",
                              path="/examplebucket/chunkObject.txt")
    key = sigv4.verify(request, claim, EXAMPLE_SECRET)
    chunks = sigv4.ChunkSigner(key, claim)
    assert chunks.chunk(hashlib.sha256(b"a" * 65536).hexdigest()) == \
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    assert chunks.chunk(hashlib.sha256(b"a" * 1024).hexdigest()) == \
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    assert chunks.chunk(sigv4.EMPTY_SHA256) == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"


def _crt_signed(method: str, path: str, headers: list[tuple[str, str]], secret: str, when: datetime.datetime,
                query_form: bool = False) -> sigv4.Request:
    request = http.HttpRequest(method, path, http.HttpHeaders(headers))
    config = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4,
        signature_type=(auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS if query_form
                        else auth.AwsSignatureType.HTTP_REQUEST_HEADERS),
        credentials_provider=auth.AwsCredentialsProvider.new_static("PACTESTKEY0000000000", secret),
        region="us-west-2", service="s3", date=when, use_double_uri_encode=False, should_normalize_uri_path=False,
        signed_body_value=auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        signed_body_header_type=(auth.AwsSignedBodyHeaderType.NONE if query_form
                                 else auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256),
        expiration_in_seconds=600 if query_form else None)
    signed = auth.aws_sign_request(request, config).result(10)
    target = signed.path
    raw_path, _, raw_query = target.partition("?")
    return sigv4.Request(method, raw_path, raw_query, list(signed.headers))


@pytest.mark.parametrize("query_form", [False, True], ids=["header", "presigned"])
@pytest.mark.parametrize("path", ["/ingest/run42/a%20b.dat", "/ingest/%C3%A9t%C3%A9/x~y_z-1.tar",
                                  "/ingest/k?uploadId=abc&partNumber=3", "/ingest?list-type=2&prefix=r%2Fx&max-keys=5"])
def test_requests_the_aws_common_runtime_signed_verify_and_a_changed_byte_does_not(path, query_form):
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    secret = "pac_not-a-real-secret-but-as-long-as-one"
    request = _crt_signed("PUT", path, [("Host", "127.0.0.1:9000"), ("Content-Length", "3")], secret, now, query_form)
    claim = sigv4.read_claim(request)
    assert claim is not None and claim.presigned is query_form and claim.region == "us-west-2"
    sigv4.check_time(claim, dict(request.params()), now)
    sigv4.verify(request, claim, secret)
    for changed in (sigv4.Request("POST", request.path, request.query, request.headers),
                    sigv4.Request(request.method, request.path + "x", request.query, request.headers),
                    sigv4.Request(request.method, request.path, request.query,
                                  [(name, "4" if name.lower() == "content-length" else value)
                                   for name, value in request.headers])):
        with pytest.raises(sigv4.SignatureError) as refused:
            sigv4.verify(changed, claim, secret)
        assert refused.value.code == "SignatureDoesNotMatch"


def test_a_request_from_too_far_in_the_past_or_a_presigned_url_that_expired_is_refused():
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    old = now - datetime.timedelta(minutes=20)
    header = _crt_signed("GET", "/ingest/x", [("Host", "h")], "s", old)
    claim = sigv4.read_claim(header)
    with pytest.raises(sigv4.SignatureError) as skewed:
        sigv4.check_time(claim, {}, now)
    assert skewed.value.code == "RequestTimeTooSkewed"
    presigned = _crt_signed("GET", "/ingest/x", [("Host", "h")], "s", old, query_form=True)
    claim = sigv4.read_claim(presigned)
    with pytest.raises(sigv4.SignatureError) as expired:
        sigv4.check_time(claim, dict(presigned.params()), now)
    assert expired.value.code == "AccessDenied" and "expired" in str(expired.value)


@pytest.mark.parametrize("authorization, code", [
    ("AWS AKID:signature", "AccessDenied"),
    ("AWS4-HMAC-SHA256 Credential=AKIDAKIDAKIDAKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host",
     "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=short/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
     "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=AKIDAKIDAKIDAKID/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, "
     "Signature=00", "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=AKIDAKIDAKIDAKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, "
     "Signature=00", "AccessDenied"),
])
def test_malformed_authorizations_are_named(authorization, code):
    request = sigv4.Request("GET", "/", "", [("Authorization", authorization), ("x-amz-date", "20260101T000000Z"),
                                              ("x-amz-content-sha256", sigv4.UNSIGNED)])
    with pytest.raises(sigv4.SignatureError) as refused:
        sigv4.read_claim(request)
    assert refused.value.code == code
