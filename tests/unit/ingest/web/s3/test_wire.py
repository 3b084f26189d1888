"""S3 bodies as they arrive: ``aws-chunked`` with signed chunks (the S3 documentation's own example),
unsigned chunks with a trailer (what botocore sends since 1.36), a declared payload SHA-256."""

from __future__ import annotations

import hashlib
import io

import pytest

from pacifica.core.auth import sigv4
from pacifica.ingest.web.s3.wire import PayloadReader, WireError
from tests.unit.core.auth.test_sigv4 import EXAMPLE_KEY, EXAMPLE_SECRET

SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = ("ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
          "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
          "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")


class Raw:
    """A request body, read in small pieces as a socket gives them."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self.stream, self.piece = io.BytesIO(data), piece

    def readinto(self, buffer: memoryview) -> int:
        data = self.stream.read(min(len(buffer), self.piece))
        buffer[:len(data)] = data
        return len(data)


def _drain(reader: PayloadReader) -> bytes:
    out = bytearray()
    buffer = memoryview(bytearray(4096))
    while count := reader.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


def _example_claim() -> tuple[sigv4.Claim, bytes]:
    claim = sigv4.Claim(EXAMPLE_KEY, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", "us-east-1",
                        ("host",), SEED, sigv4.STREAMING_SIGNED, presigned=False)
    return claim, sigv4.signing_key(EXAMPLE_SECRET, "20130524", "us-east-1")


def _example_body(data: bytes = b"a" * 66560) -> bytes:
    return (f"10000;chunk-signature={CHUNKS[0]}\r\n".encode() + data[:65536] + b"\r\n"
            + f"400;chunk-signature={CHUNKS[1]}\r\n".encode() + data[65536:] + b"\r\n"
            + f"0;chunk-signature={CHUNKS[2]}\r\n\r\n".encode())


def test_the_documented_signed_chunks_decode_to_the_object():
    claim, key = _example_claim()
    assert _drain(PayloadReader(Raw(_example_body()), claim, key, True, 66560)) == b"a" * 66560


def test_one_changed_byte_of_a_signed_chunk_is_refused():
    claim, key = _example_claim()
    changed = b"a" * 60000 + b"b" + b"a" * (66560 - 60001)
    with pytest.raises(sigv4.SignatureError) as refused:
        _drain(PayloadReader(Raw(_example_body(changed)), claim, key, True, 66560))
    assert refused.value.code == "SignatureDoesNotMatch"


def test_an_unsigned_trailer_is_read_after_the_last_chunk():
    claim = sigv4.Claim("K" * 20, "20260101T000000Z", "20260101/us-east-1/s3/aws4_request", "us-east-1", ("host",),
                        "0" * 64, sigv4.STREAMING_UNSIGNED_TRAILER, presigned=False)
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    reader = PayloadReader(Raw(body, 3), claim, None, True, 11)
    assert _drain(reader) == b"hello world"
    assert reader.trailers == {"x-amz-checksum-crc32": "DUoRhQ=="}


@pytest.mark.parametrize("body, code", [
    (b"5\r\nhello\r\n", "IncompleteBody"),  # ends before the last chunk
    (b"zz\r\nhello\r\n0\r\n\r\n", "IncompleteBody"),  # not a size
    (b"5\r\nhelloXX0\r\n\r\n", "IncompleteBody"),  # no CRLF after the data
    (b"5000000\r\n", "InvalidRequest"),  # a chunk larger than any client sends
])
def test_a_broken_chunked_body_is_named(body, code):
    with pytest.raises(WireError) as refused:
        _drain(PayloadReader(Raw(body), None, None, True, None))
    assert refused.value.code == code


def test_a_declared_payload_hash_is_checked_at_the_end():
    data = b"some bytes"
    claim = sigv4.Claim("K" * 20, "20260101T000000Z", "20260101/us-east-1/s3/aws4_request", "us-east-1", ("host",),
                        "0" * 64, hashlib.sha256(data).hexdigest(), presigned=False)
    assert _drain(PayloadReader(Raw(data), claim, None, False, None)) == data
    with pytest.raises(sigv4.SignatureError) as refused:
        _drain(PayloadReader(Raw(b"other bytes"), claim, None, False, None))
    assert refused.value.code == "XAmzContentSHA256Mismatch"
