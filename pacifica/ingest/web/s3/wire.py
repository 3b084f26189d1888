"""An S3 request body as it arrives: plain, or ``aws-chunked`` (chunks, their signatures, trailing
headers), with the payload hash it declared checked as the bytes pass.

``PayloadReader`` hands the decoded bytes out through ``readinto`` (the ``Body`` of the volume),
so the store writes and hashes them exactly as an upload's. A signature or payload hash that
does not hold raises ``SignatureError`` from ``readinto``: the store then keeps nothing of the
body. The trailing headers (``x-amz-checksum-*``) are in ``trailers`` once the body ended.
"""

from __future__ import annotations

import hashlib

from ....core.auth.sigv4 import (
    STREAMING,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    UNSIGNED,
    ChunkSigner,
    Claim,
    SignatureError,
)
from ...volume.body import Body

# The longest chunk header or trailer line accepted (a size, a signature, a checksum).
MAX_LINE = 4096
# The most trailing headers accepted.
MAX_TRAILERS = 16
# The largest chunk accepted (clients send 64 KiB to 8 MiB).
MAX_CHUNK = 64 << 20


class WireError(Exception):
    """A body that is not what its headers said, with the S3 error code to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Buffered:
    """The raw body with a small look-ahead buffer, for the lines of ``aws-chunked``."""

    def __init__(self, body: Body, block: int = 1 << 16) -> None:
        self.body = body
        self.pending = bytearray()
        self.block = memoryview(bytearray(block))

    def _fill(self) -> bool:
        count = self.body.readinto(self.block)
        if count:
            self.pending += self.block[:count]
        return bool(count)

    def line(self) -> bytes:
        """The next line, without its CRLF; ``WireError`` when the body ends first or it is too long."""
        while True:
            end = self.pending.find(b"\r\n")
            if end >= 0:
                line = bytes(self.pending[:end])
                del self.pending[:end + 2]
                return line
            if len(self.pending) > MAX_LINE:
                raise WireError("IncompleteBody", "an aws-chunked line is too long")
            if not self._fill():
                raise WireError("IncompleteBody", "the aws-chunked body ended inside a chunk header")

    def readinto(self, buffer: memoryview) -> int:
        """Raw bytes: the buffered ones first, then the body's."""
        if self.pending:
            count = min(len(buffer), len(self.pending))
            buffer[:count] = self.pending[:count]
            del self.pending[:count]
            return count
        return self.body.readinto(buffer)


class PayloadReader:
    """The decoded bytes of an S3 request body (``readinto``), checked against what ``claim``
    declared: a SHA-256 of the payload, or chunk signatures (``key``: the request's signing key)."""

    def __init__(self, body: Body, claim: Claim | None, key: bytes | None, chunked: bool,
                 decoded_length: int | None) -> None:
        self.claim = claim
        payload = claim.payload if claim else UNSIGNED
        self.chunked = chunked or payload in STREAMING
        self.raw = _Buffered(body) if self.chunked else body
        self.sha256 = hashlib.sha256() if len(payload) == 64 and payload not in STREAMING else None
        self.signer = ChunkSigner(key, claim) if claim and key and payload in (STREAMING_SIGNED,
                                                                              STREAMING_SIGNED_TRAILER) else None
        self.signed_trailer = payload == STREAMING_SIGNED_TRAILER
        self.decoded_length = decoded_length
        self.trailers: dict[str, str] = {}
        self.count = 0
        self._left = 0  # bytes left of the current chunk
        self._chunk_hash: hashlib._Hash | None = None
        self._chunk_signature = ""
        self._done = False

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of ``buffer`` with the next decoded bytes; 0 at the end (after every
        check of the body held)."""
        if self._done:
            return 0
        count = self._read_chunked(buffer) if self.chunked else self.raw.readinto(buffer)
        if count:
            self.count += count
            if self.sha256 is not None:
                self.sha256.update(buffer[:count])
            return count
        self._finish()
        return 0

    def _read_chunked(self, buffer: memoryview) -> int:
        raw = self.raw
        assert isinstance(raw, _Buffered)
        while self._left == 0:
            if not self._next_chunk():
                return 0
        count = raw.readinto(buffer[:min(len(buffer), self._left)])
        if not count:
            raise WireError("IncompleteBody", "the body ended inside an aws-chunked chunk")
        self._left -= count
        if self._chunk_hash is not None:
            self._chunk_hash.update(buffer[:count])
        if self._left == 0:
            self._end_chunk()
        return count

    def _next_chunk(self) -> bool:
        """Read the next chunk's header; False at the last (empty) chunk, its trailer read."""
        raw = self.raw
        assert isinstance(raw, _Buffered)
        header = raw.line().decode("latin-1")
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise WireError("IncompleteBody", f"{header[:40]!r} is not an aws-chunked chunk header") from None
        if size < 0 or size > MAX_CHUNK:
            raise WireError("InvalidRequest", f"an aws-chunked chunk of {size} bytes is too large")
        signature = extension.strip().partition("chunk-signature=")[2].strip().lower()
        if self.signer is not None and not signature:
            raise SignatureError("SignatureDoesNotMatch", "a chunk of a signed streaming body has no signature")
        self._chunk_signature = signature
        self._chunk_hash = hashlib.sha256() if self.signer is not None else None
        if size == 0:
            self._end_chunk(last=True)
            self._read_trailer()
            return False
        self._left = size
        return True

    def _end_chunk(self, last: bool = False) -> None:
        """Check the chunk just read against its signature; after data, its CRLF follows."""
        raw = self.raw
        assert isinstance(raw, _Buffered)
        if (self.signer is not None and self._chunk_hash is not None
                and self.signer.chunk(self._chunk_hash.hexdigest()) != self._chunk_signature):
            raise SignatureError("SignatureDoesNotMatch", "a chunk's signature does not match its bytes")
        if not last and raw.line() != b"":
            raise WireError("IncompleteBody", "an aws-chunked chunk does not end with CRLF")

    def _read_trailer(self) -> None:
        raw = self.raw
        assert isinstance(raw, _Buffered)
        lines: list[str] = []
        signature = ""
        while True:
            try:
                line = raw.line().decode("latin-1")
            except WireError:
                if raw.pending or lines or signature:
                    raise
                return  # no trailer and no final CRLF: some clients end right after the last chunk
            if not line:
                break
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "x-amz-trailer-signature":
                signature = value.strip().lower()
                continue
            if len(self.trailers) >= MAX_TRAILERS:
                raise WireError("InvalidRequest", "too many trailing headers")
            self.trailers[name] = value.strip()
            lines.append(f"{name}:{value.strip()}\n")
        if self.signer is not None and self.signed_trailer and self.signer.trailer("".join(lines)) != signature:
            raise SignatureError("SignatureDoesNotMatch", "the trailing headers' signature does not match")

    def _finish(self) -> None:
        self._done = True
        if self.decoded_length is not None and self.count != self.decoded_length:
            raise WireError("IncompleteBody", f"the body had {self.count} bytes, not the "
                                              f"{self.decoded_length} x-amz-decoded-content-length announced")
        if self.sha256 is not None and self.claim is not None and self.sha256.hexdigest() != self.claim.payload:
            raise SignatureError("XAmzContentSHA256Mismatch",
                                 "The provided 'x-amz-content-sha256' header does not match what was computed.")
