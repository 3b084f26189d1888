"""Read a request body straight from the socket, beneath cheroot's pure-Python buffering.

cheroot reads request bodies through ``_pyio.BufferedReader`` (pure Python), which copies every
block several times: about 2.5 s per GiB on a small machine, more than the disk takes to write
it. ``SocketBody`` hands out whatever cheroot had already buffered, then lets the socket
``recv_into`` the caller's buffer. Anything that is not cheroot's fixed-length body (a chunked
body, another WSGI server) is read through its own ``read()``.
"""

from __future__ import annotations

from typing import Any


class SocketBody:
    """A fixed-length request body of cheroot, read with ``readinto`` straight from the socket."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.stream = rfile.rfile

    @staticmethod
    def supports(rfile: Any) -> bool:
        """Whether ``rfile`` is cheroot's fixed-length body over its buffered socket reader."""
        from cheroot.makefile import StreamReader
        from cheroot.server import KnownLengthRFile

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


def request_body(rfile: Any) -> SocketBody | ReadBody:
    """The fastest reader for a request body."""
    return SocketBody(rfile) if SocketBody.supports(rfile) else ReadBody(rfile)
