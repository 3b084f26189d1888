"""Read a request body straight from the socket, beneath cheroot's pure-Python buffering.

cheroot reads request bodies through ``_pyio.BufferedReader`` (pure Python), which copies every
block several times: about 2.5 s per GiB on a small machine, more than the disk takes to write
it. ``SocketBody`` hands out whatever cheroot had already buffered, then lets the socket
``recv_into`` the caller's buffer. Under uWSGI, ``UwsgiBody`` lets an uploader pause for as long
as CherryPy would. Anything else (a chunked body, another WSGI server) is read through its own
``read()``.
"""

from __future__ import annotations

import array
import fcntl
import select
import sys
import termios
import time
from typing import Any, Protocol

from cheroot.makefile import StreamReader
from cheroot.server import KnownLengthRFile

# How long an uploader may send nothing before the upload is given up (CherryPy's socket timeout).
STALL_SECONDS = 300.0


class Body(Protocol):
    """A request body read into the caller's buffers: ``readinto`` returns how many bytes it put
    there, 0 at the end."""

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` with the next bytes of the body; return how many (0 at the end)."""


class SocketBody:
    """A fixed-length request body of cheroot, read with ``readinto`` straight from the socket."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.stream = rfile.rfile

    @staticmethod
    def supports(rfile: Any) -> bool:
        """Whether ``rfile`` is cheroot's fixed-length body over its buffered socket reader."""
        stream = getattr(rfile, "rfile", None)
        return (isinstance(rfile, KnownLengthRFile) and isinstance(stream, StreamReader)
                and hasattr(stream, "_read_buf") and hasattr(stream, "_read_pos"))

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of ``buffer`` with the next bytes of the body; return how many (0 at the end)."""
        wanted = min(len(buffer), self.rfile.remaining)
        if wanted <= 0:
            return 0
        stream = self.stream
        buffered = len(stream._read_buf) - stream._read_pos
        if buffered > 0:
            count = min(wanted, buffered)
            buffer[:count] = stream._read_buf[stream._read_pos:stream._read_pos + count]
            stream._read_pos += count
        else:
            count = stream.raw.readinto(buffer[:wanted]) or 0
        self.rfile.remaining -= count
        stream.bytes_read += count
        return count


class ReadBody:
    """Any readable body, offered through ``readinto``."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of ``buffer`` with the next bytes of the body; return how many (0 at the end)."""
        block = self.body.read(len(buffer))
        buffer[:len(block)] = block
        return len(block)


class BodyStalled(OSError):
    """The client sent nothing for longer than ``STALL_SECONDS``."""


class UwsgiBody:
    """uWSGI's request body, read so that a pause longer than uWSGI's socket timeout loses nothing.

    ``wsgi.input.read(n)`` waits ``--socket-timeout`` (4 s by default) for all ``n`` bytes, then
    raises and drops the bytes it had read so far. So this asks only for what the socket already
    holds (at least one byte, which a timeout cannot lose, or which comes from uWSGI's own
    buffer of bytes read with the headers), and treats a timeout as a pause until ``stall``
    seconds pass without a byte.
    """

    def __init__(self, rfile: Any, stall: float = STALL_SECONDS) -> None:
        self.rfile = rfile
        self.fd = rfile.fileno()
        self.stall = stall

    @staticmethod
    def supports(rfile: Any) -> bool:
        """Whether ``rfile`` is uWSGI's ``wsgi.input`` on a plain socket."""
        return "uwsgi" in sys.modules and type(rfile).__module__ == "uwsgi" and hasattr(rfile, "fileno")

    def _waiting(self) -> int:
        count = array.array("i", [0])
        fcntl.ioctl(self.fd, termios.FIONREAD, count, True)
        return count[0]

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of ``buffer`` with the next bytes of the body; return how many (0 at the end)."""
        deadline = time.monotonic() + self.stall
        while True:
            try:
                block = self.rfile.read(min(len(buffer), max(self._waiting(), 1)))
            except OSError as exc:
                if "timeout" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise BodyStalled(f"the client sent nothing for {self.stall:g} s") from None
                select.select([self.fd], [], [], 1.0)
                continue
            buffer[:len(block)] = block
            return len(block)


class PeekedBody:
    """A body whose first bytes were read already (``head``) to look at them: they come first."""

    def __init__(self, head: bytes, rest: Body) -> None:
        self.head = memoryview(head)
        self.rest = rest

    def readinto(self, buffer: memoryview) -> int:
        """Fill the start of ``buffer`` with the next bytes of the body; return how many (0 at the end)."""
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count] = self.head[:count]
            self.head = self.head[count:]
            return count
        return self.rest.readinto(buffer)


def read_head(body: Body, size: int) -> bytes:
    """The first ``size`` bytes of ``body`` (fewer if it ends sooner), to look at before the rest."""
    head = bytearray(size)
    view = memoryview(head)
    filled = 0
    while filled < size:
        count = body.readinto(view[filled:])
        if not count:
            break
        filled += count
    return bytes(head[:filled])


def request_body(rfile: Any) -> Body:
    """The fastest reader for a request body."""
    if SocketBody.supports(rfile):
        return SocketBody(rfile)
    return UwsgiBody(rfile) if UwsgiBody.supports(rfile) else ReadBody(rfile)
