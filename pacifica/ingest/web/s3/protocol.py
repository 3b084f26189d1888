"""S3's XML: error bodies, listings and the multipart documents, written and read.

Requests' XML (a completion's list of parts) is read with a size bound and without a DOCTYPE, so
that no entity can expand; everything written is escaped by ``ElementTree``.
"""

from __future__ import annotations

import datetime
import secrets
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
# The largest XML body read (a completion of 10,000 parts with checksums is about 2 MB).
MAX_XML = 4 << 20

# The HTTP status of each S3 error code this door answers with.
STATUS = {
    "AccessDenied": 403, "InvalidAccessKeyId": 403, "SignatureDoesNotMatch": 403, "RequestTimeTooSkewed": 403,
    "InvalidObjectState": 403, "AuthorizationHeaderMalformed": 400, "AuthorizationQueryParametersError": 400,
    "XAmzContentSHA256Mismatch": 400, "BadDigest": 400, "InvalidDigest": 400, "InvalidArgument": 400,
    "InvalidRequest": 400, "InvalidPart": 400, "InvalidPartOrder": 400, "MalformedXML": 400,
    "IncompleteBody": 400, "KeyTooLongError": 400, "EntityTooLarge": 400, "InvalidBucketName": 400,
    "NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchUpload": 404, "MethodNotAllowed": 405,
    "PreconditionFailed": 412, "InvalidRange": 416, "InternalError": 500, "NotImplemented": 501,
    "ServiceUnavailable": 503, "SlowDown": 503, "InsufficientStorage": 507, "QuotaExceeded": 403,
}


class S3Error(Exception):
    """An answer with an S3 error: its code, message, HTTP status and extra headers."""

    def __init__(self, code: str, message: str, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or STATUS.get(code, 400)
        self.headers = headers or {}


def request_id() -> str:
    """An id for a request, as ``x-amz-request-id`` carries it."""
    return secrets.token_hex(8).upper()


def _document(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def element(name: str, children: Mapping[str, object] | Iterable[tuple[str, object]] = (),
            namespace: bool = True) -> ET.Element:
    """An element with text children (``None`` values are left out)."""
    root = ET.Element(name, {"xmlns": NAMESPACE} if namespace else {})
    items = children.items() if isinstance(children, Mapping) else children
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, ET.Element):
            root.append(value)
        else:
            ET.SubElement(root, key).text = _text(value)
    return root


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error_body(code: str, message: str, resource: str, rid: str) -> bytes:
    """An S3 error document."""
    return _document(element("Error", {"Code": code, "Message": message, "Resource": resource, "RequestId": rid},
                             namespace=False))


def render(root: ET.Element) -> bytes:
    """``root`` as an XML document."""
    return _document(root)


def timestamp(seconds: float) -> str:
    """A time as S3's listings write it."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def http_date(seconds: float) -> str:
    """A time as ``Last-Modified`` writes it."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def encoded(text: str, url: bool) -> str:
    """A key or prefix in a listing: URL-encoded when the client asked (``encoding-type=url``)."""
    return urllib.parse.quote(text, safe="/") if url else text


def parse(body: bytes) -> ET.Element:
    """A request's XML document; ``MalformedXML`` if it is not one, or declares a DOCTYPE."""
    if len(body) > MAX_XML:
        raise S3Error("MalformedXML", "the XML document is too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise S3Error("MalformedXML", "the XML document must not declare a DOCTYPE or entities")
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not validate against "
                                      "our published schema") from None


def local(tag: str) -> str:
    """A tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def completion_parts(root: ET.Element) -> list[tuple[int, str, dict[str, str]]]:
    """The parts a ``CompleteMultipartUpload`` document names: number, ETag and checksums."""
    if local(root.tag) != "CompleteMultipartUpload":
        raise S3Error("MalformedXML", "the body must be a CompleteMultipartUpload document")
    parts = []
    for part in root:
        if local(part.tag) != "Part":
            continue
        fields = {local(child.tag): (child.text or "").strip() for child in part}
        try:
            number = int(fields.get("PartNumber", ""))
        except ValueError:
            raise S3Error("MalformedXML", "each Part needs a PartNumber") from None
        checksums = {name[len("Checksum"):].lower(): value for name, value in fields.items()
                     if name.startswith("Checksum") and name != "ChecksumType"}
        parts.append((number, fields.get("ETag", ""), checksums))
    return parts
