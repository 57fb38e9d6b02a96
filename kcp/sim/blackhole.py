"""A listener that accepts TCP connections and never answers: a hung server, as a client sees it.

Connections are held open (never read, never written) until `close()`, so a
client without timeouts hangs exactly as it would on a wedged API server or
etcd member. This is what the tracker's timeouts and "one sick cluster must
never slow the others" are tested against.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["Blackhole", "listen"]

_BIND_ATTEMPTS = 50


class Blackhole:
    """Listens on `host:port` from construction until `close()`."""

    def __init__(self, host: str, port: int, *, bind_timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server = listen(host, port, bind_timeout)
        self._thread = threading.Thread(
            target=self._accept, name=f"blackhole-{host}:{port}", daemon=True
        )
        self._thread.start()

    @property
    def connections(self) -> int:
        """How many connections it holds now."""
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(2)
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._held.append(conn)


def listen(host: str, port: int, timeout: float) -> socket.socket:
    """Bind, retrying while the port's previous owner is still going away."""
    deadline = time.monotonic() + timeout
    for _ in range(_BIND_ATTEMPTS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    raise OSError(f"cannot listen on {host}:{port}")
