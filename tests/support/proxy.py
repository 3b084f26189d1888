"""A TCP forwarder on loopback that a test can cut, to take a service away from the ingest
service (the service itself keeps running for everything else)."""

from __future__ import annotations

import contextlib
import socket
import threading

from .procs import free_port


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target``; ``stop()`` refuses new connections and cuts live ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.forwarded = 0  # bytes passed on, both ways
        self.requests = bytearray()  # what clients sent (bounded): to see which headers went out

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update((client, upstream))
            for source, sink, from_client in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(source, sink, from_client), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        # Whatever ends this pipe (a cut included) ends both sockets: a client must never be left
        # sending into a connection that nothing reads any more.
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                self.forwarded += len(data)
                if from_client and len(self.requests) < (1 << 24):
                    with self.lock:
                        self.requests.extend(data[:4096])
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> int:
        """Cut every live connection (as a dropped network would) but keep accepting new ones;
        return how many were cut."""
        with self.lock:
            live = list(self.connections)
            self.connections.clear()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(live) // 2

    def stop(self) -> None:
        if self.listener is not None:
            # close() alone does not wake the thread blocked in accept(): the port would keep
            # accepting connections.
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.connections.clear()
