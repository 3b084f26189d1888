"""The pure parts of the tus protocol and of callback delivery."""

from __future__ import annotations

import base64

import pytest

from pacifica.ingest.jobs.callbacks import MAX_DELAY, check_url, delay
from pacifica.ingest.volume.resumable import TusError, parse_checksum, parse_metadata


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_upload_metadata_pairs_decode_and_keys_without_values_are_empty():
    header = f"filename {_b64('bündle.tar')},callback_url {_b64('http://h/x')}, is_confidential"
    assert parse_metadata(header) == {"filename": "bündle.tar", "callback_url": "http://h/x", "is_confidential": ""}
    assert parse_metadata(None) == {} and parse_metadata("") == {}


@pytest.mark.parametrize("header", ["filename not*base64", "a b c", " , x", "name " + _b64("x")[:-1] + "!"])
def test_malformed_upload_metadata_is_a_400(header):
    with pytest.raises(TusError) as raised:
        parse_metadata(header)
    assert raised.value.status == 400


def test_upload_checksum_names_a_supported_algorithm_and_a_base64_digest():
    digest = bytes(range(20))
    assert parse_checksum("sha1 " + base64.b64encode(digest).decode()) == ("sha1", digest)
    assert parse_checksum("SHA256 AAAA") == ("sha256", b"\0\0\0")
    assert parse_checksum(None) is None
    for header in ("sha1", "crc32 AAAA", "sha1 not-base64!", "sha1 AAAA extra"):
        with pytest.raises(TusError) as raised:
            parse_checksum(header)
        assert raised.value.status == 400, header


def test_callback_urls_must_be_http_and_delays_double_up_to_a_cap():
    assert check_url("https://93.184.215.14/hook?job=1") is None  # a public address: no DNS needed
    assert "http://" in check_url("ftp://93.184.215.14/x")
    assert check_url("not a url") is not None
    assert check_url("http://h/" + "x" * 3000) is not None
    assert [delay(attempt, 2.0) for attempt in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert delay(30, 2.0) == MAX_DELAY
