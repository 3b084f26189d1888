"""The checksums S3 clients send and ask for: CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256, and MD5
(``Content-MD5`` and the ETag).

The CRCs come from ``awscrt`` (the AWS SDKs' own native implementation, which botocore itself
uses for CRC32C and CRC64NVME), the rest from ``hashlib``. Values are base64 of the big-endian
digest, as S3 writes them. A multipart object's checksum is either *full object* (the algorithm
over every byte) or *composite* (the algorithm over the parts' digests, then ``-<parts>``).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterable

from awscrt import checksums as crt

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
# Which multipart checksum types each algorithm allows (S3's rules); the first is the default.
MULTIPART_TYPES = {"crc32": ("COMPOSITE", "FULL_OBJECT"), "crc32c": ("COMPOSITE", "FULL_OBJECT"),
                   "crc64nvme": ("FULL_OBJECT",), "sha1": ("COMPOSITE",), "sha256": ("COMPOSITE",)}


class _Crc:
    """A CRC with the ``hashlib`` interface."""

    def __init__(self, function, width: int) -> None:
        self.function, self.width, self.value = function, width, 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = self.function(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.width, "big")


def _zlib_crc32(data: bytes | memoryview, previous: int) -> int:
    return zlib.crc32(data, previous)


def new(algorithm: str):
    """A fresh hasher of ``algorithm`` (one of ``ALGORITHMS`` or ``md5``)."""
    if algorithm == "crc32":
        return _Crc(_zlib_crc32, 4)
    if algorithm == "crc32c":
        return _Crc(crt.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(crt.crc64nvme, 8)
    return hashlib.new(algorithm)


def encode(digest: bytes) -> str:
    """A digest as S3 headers carry it."""
    return base64.b64encode(digest).decode("ascii")


def decode(value: str) -> bytes | None:
    """A header's base64 digest, or None when it is not base64."""
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (ValueError, TypeError):
        return None


def composite(algorithm: str, part_digests: Iterable[bytes]) -> str:
    """The composite checksum of a multipart object: ``algorithm`` over its parts' digests, then
    ``-<number of parts>``."""
    hasher = new(algorithm)
    count = 0
    for digest in part_digests:
        hasher.update(digest)
        count += 1
    return f"{encode(hasher.digest())}-{count}"


class Hashers:
    """Every digest an S3 body needs, fed the same bytes: MD5 (the ETag) and the algorithms named."""

    def __init__(self, algorithms: Iterable[str]) -> None:
        self.hashers = {name: new(name) for name in dict.fromkeys(["md5", *algorithms])}

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes to every hasher."""
        for hasher in self.hashers.values():
            hasher.update(data)

    def digest(self, algorithm: str) -> bytes:
        """The digest of ``algorithm`` so far."""
        return self.hashers[algorithm].digest()

    def values(self) -> dict[str, str]:
        """Every digest but MD5, base64 as S3 writes them."""
        return {name: encode(hasher.digest()) for name, hasher in self.hashers.items() if name != "md5"}
