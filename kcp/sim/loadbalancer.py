"""The control-plane endpoint of a simulated cluster: a small threaded TCP proxy.

It listens on the cluster's own loopback address at 6443 and forwards each
connection, as raw TCP (TLS passes through untouched, so clients verify the
API servers' certificates and present their own), to one healthy API server in
round-robin order. A backend is healthy while its `/readyz` answers 200 within
a second (anonymously, over TLS verified against the CA the backend's machine
trusts, on a connection kept from one check to the next); an unhealthy one gets
no new connections. When every backend is
down a connection is closed at once, as haproxy does.

`blackhole()` turns the endpoint into a hung one: new connections are accepted
and never answered, open ones go silent; `restore()` ends it (connections that
went silent are closed, their streams being broken).
"""

from __future__ import annotations

import contextlib
import itertools
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass, field

from kcp.sim.apiserver import API_SERVER_PORT, ReadyzProbe, readyz
from kcp.sim.blackhole import listen

__all__ = ["Backend", "LoadBalancer"]

_CONNECT_TIMEOUT = 2.0
_BUFFER = 65536


@dataclass
class Backend:
    """One API server behind the load balancer."""

    name: str
    host: str
    port: int = API_SERVER_PORT
    healthy: bool = False
    connections: int = 0
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    context: ssl.SSLContext | None = field(default=None, repr=False)
    """How its health check verifies it (None: the load balancer's default)."""

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


class LoadBalancer:
    """Forwards `host:port` to the healthy backends; start with `start()`, end with `stop()`."""

    def __init__(
        self,
        host: str,
        port: int = API_SERVER_PORT,
        *,
        ca_file: str | None = None,
        check_interval: float = 1.0,
        name: str = "lb",
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.check_interval = check_interval
        self._context = _check_context(ca_file)
        """For backends added without a CA of their own."""
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._rr = itertools.count()
        self._stopped = threading.Event()
        self._blackholed = False
        self._silenced: set[socket.socket] = set()
        self._open: set[socket.socket] = set()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.accepted = 0
        """Connections accepted since start (blackholed ones included)."""

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    def start(self) -> None:
        self._server = listen(self.host, self.port, timeout=5.0)
        self._thread = threading.Thread(
            target=self._accept, name=f"{self.name}-accept", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, stop health checks and close every open connection."""
        self._stopped.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            backends = list(self._backends.values())
            self._backends.clear()
            sockets = list(self._open)
        for backend in backends:
            backend.stop.set()
        for sock in sockets:
            _close(sock)

    # -- backends -----------------------------------------------------------------------

    def set_backend(
        self, name: str, host: str, port: int = API_SERVER_PORT, *, ca_file: str | None = None
    ) -> None:
        """Add (or move) a backend; it gets traffic once its first health check passes.

        `ca_file` is what its health check trusts (the CA the backend's machine
        was given); without one, the load balancer's own `ca_file` applies.
        """
        with self._lock:
            current = self._backends.get(name)
            if current is not None and (current.host, current.port) == (host, port):
                return
            if current is not None:
                current.stop.set()
            context = _check_context(ca_file) if ca_file is not None else None
            backend = Backend(name, host, port, context=context)
            self._backends[name] = backend
        threading.Thread(
            target=self._check_loop, args=(backend,), name=f"{self.name}-check-{name}", daemon=True
        ).start()

    def remove_backend(self, name: str) -> None:
        with self._lock:
            backend = self._backends.pop(name, None)
        if backend is not None:
            backend.stop.set()

    def backends(self) -> list[Backend]:
        with self._lock:
            return list(self._backends.values())

    def healthy_backends(self) -> list[str]:
        with self._lock:
            return sorted(b.name for b in self._backends.values() if b.healthy)

    def check_now(self) -> list[str]:
        """Run every health check once now; returns the healthy backends' names."""
        for backend in self.backends():
            backend.healthy = readyz(backend.url, backend.context or self._context, timeout=1.0)
        return self.healthy_backends()

    # -- faults -------------------------------------------------------------------------

    def blackhole(self) -> None:
        """Accept and never answer; open connections stop carrying data."""
        with self._lock:
            self._blackholed = True
            self._silenced.update(self._open)

    def restore(self) -> None:
        """Forward again; connections silenced by the blackhole are closed."""
        with self._lock:
            self._blackholed = False
            silenced, self._silenced = self._silenced, set()
        for sock in silenced:
            _close(sock)

    # -- internals ----------------------------------------------------------------------

    def _check_loop(self, backend: Backend) -> None:
        probe = ReadyzProbe(backend.host, backend.port, backend.context or self._context, 1.0)
        try:
            while not backend.stop.is_set() and not self._stopped.is_set():
                backend.healthy = probe.check()
                backend.stop.wait(self.check_interval)
        finally:
            probe.close()
        backend.healthy = False

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(
                target=self._serve, args=(client,), name=f"{self.name}-conn", daemon=True
            ).start()

    def _pick(self) -> list[Backend]:
        with self._lock:
            healthy = [b for b in self._backends.values() if b.healthy]
        if not healthy:
            return []
        start = next(self._rr) % len(healthy)
        return healthy[start:] + healthy[:start]

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
            if self._blackholed:
                self._silenced.add(client)
        upstream: socket.socket | None = None
        backend: Backend | None = None
        try:
            if not self._blackholed:
                for candidate in self._pick():
                    try:
                        upstream = socket.create_connection(
                            (candidate.host, candidate.port), timeout=_CONNECT_TIMEOUT
                        )
                    except OSError:
                        candidate.healthy = False
                        continue
                    backend = candidate
                    break
                if upstream is None or backend is None:
                    return
                upstream.settimeout(None)
                with self._lock:
                    self._open.add(upstream)
                    backend.connections += 1
            self._pump(client, upstream)
        finally:
            with self._lock:
                self._open.discard(client)
                self._silenced.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
                if backend is not None:
                    backend.connections -= 1
            _close(client)
            if upstream is not None:
                _close(upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket | None) -> None:
        """Copy bytes both ways until one side closes; drop them while silenced."""
        peers = {client: upstream}
        if upstream is not None:
            peers[upstream] = client
        with selectors.DefaultSelector() as selector:
            for peer in peers:
                selector.register(peer, selectors.EVENT_READ, peer)
            while not self._stopped.is_set():
                for key, _ in selector.select(timeout=0.5):
                    sock: socket.socket = key.data
                    try:
                        data = sock.recv(_BUFFER)
                    except OSError:
                        return
                    if not data:
                        return
                    target = peers[sock]
                    if target is None or client in self._silenced:
                        continue
                    try:
                        target.sendall(data)
                    except OSError:
                        return


def _check_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS for health checks: verified against `ca_file`, or (without one) not verified."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=ca_file)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
