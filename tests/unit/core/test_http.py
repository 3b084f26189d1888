"""How a peer's answers and the HTTP clients' failures become errors that carry data."""

from __future__ import annotations

import errno
import http.client
import json
import pickle
import socket

import pytest
import requests
import urllib3

from pacifica.core.errors import ConnectionClosed, PeerRejected, PeerUnavailable
from pacifica.core.http import answer_error, describe_error, make_session, refusal_in_500, transport_error

TRACE = "Traceback (most recent call last):\n  File \"x.py\", line 1\n{last}"


def _trace(last: str) -> bytes:
    return json.dumps({"status": "500 Internal Server Error", "message": "boom",
                       "traceback": TRACE.format(last=last)}).encode()


@pytest.mark.parametrize(("last", "refusal"), [
    ("ValueError: Invalid metadata for file 3", True),
    ("peewee.IntegrityError: duplicate key", True),
    ("psycopg2.errors.UniqueViolation: duplicate", True),
    ("OSError: disk full", False),
    ("peewee.OperationalError: could not connect", False),
])
def test_a_500_is_a_refusal_when_its_traceback_ends_in_one(last, refusal):
    assert refusal_in_500(_trace(last)) is refusal


@pytest.mark.parametrize("content", [b"", b"not json", b"[1]", json.dumps({"traceback": ""}).encode()])
def test_a_500_without_a_traceback_is_not_a_refusal(content):
    assert refusal_in_500(content) is False


@pytest.mark.parametrize(("status", "content", "detail"), [
    (404, b"", "HTTP 404"),
    (400, b"  plain words  ", "HTTP 400: plain words"),
    (403, json.dumps({"message": "no"}).encode(), "HTTP 403: no"),
    (500, _trace("ValueError: bad file"), "HTTP 500: boom (ValueError: bad file)"),
    (502, json.dumps([1, 2]).encode(), "HTTP 502: [1, 2]"),
    (500, b"\xff\xfe", "HTTP 500: \ufffd\ufffd"),
])
def test_the_readable_reason_of_an_answer(status, content, detail):
    assert describe_error(status, content) == detail


def test_answers_become_errors_that_carry_their_facts():
    assert answer_error("archive", "http://a", 201, b"{}") is None
    missing = answer_error("archive", "http://a/7", 404, b"")
    assert isinstance(missing, PeerRejected)
    assert (missing.status, missing.message, missing.os_errno) == (404, None, None)
    posix = answer_error("archive", "http://a/7", 500, json.dumps(
        {"message": "Can't delete: [Errno 2] No such file or directory: '/srv/7'"}).encode())
    assert isinstance(posix, PeerUnavailable) and posix.status == 500 and posix.os_errno == errno.ENOENT
    refused = answer_error("metadata", "http://m", 500, _trace("ValueError: Invalid metadata"), refusals_in_500=True)
    assert isinstance(refused, PeerRejected) and refused.status == 500
    assert isinstance(answer_error("metadata", "http://m", 500, _trace("ValueError: x")), PeerUnavailable)


def test_transport_failures_map_through_one_table():
    lost = requests.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection without response")))
    error = transport_error("archive", "http://a", lost)
    assert isinstance(error, PeerUnavailable) and error.connection_lost and error.status is None
    assert error.detail.startswith("connection failed: Remote end closed connection")
    reset = transport_error("archive", "http://a", urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")))
    assert reset.connection_lost
    timed = transport_error("policy", "http://p", requests.ReadTimeout("read timed out"))
    assert timed.detail == "timed out (ReadTimeout)" and not timed.connection_lost


def test_a_refused_connection_is_unavailable_but_not_lost():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as failed:
        make_session(2, 0).get(f"http://127.0.0.1:{port}/")
    error = transport_error("uniqueid", f"http://127.0.0.1:{port}/", failed.value)
    assert error.detail.startswith("connection failed") and not error.connection_lost


def test_errors_keep_their_facts_across_processes():
    error = ConnectionClosed("archive", "http://a", "HTTP 500", status=500, message="m", os_errno=2,
                             connection_lost=True)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ConnectionClosed and str(again) == str(error)
    assert (again.status, again.message, again.os_errno, again.connection_lost) == (500, "m", 2, True)
