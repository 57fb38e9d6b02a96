"""The one I/O thread that every port-forward tunnel of the process shares.

A tunnel needs no thread of its own: its sockets are non-blocking and its protocol
state (``kcp.etcd.tunnel``) is driven by this loop's selector, so the thread count
stays the same at one tunnel or a thousand. A caller opens a tunnel on its own
thread and waits for it (bounded by its dial timeout); the loop connects, shakes
hands and upgrades without blocking, then bridges the tunnel to the caller's end of
a ``socket.socketpair()`` (a real socket, which ``ssl`` can wrap), or to a
connection accepted on a loopback ``Listener`` (what gRPC dials).

Bounded: at most ``max_tunnels`` stay open; opening one more closes the least
recently used, whose connection is simply re-opened when next needed. A tunnel
whose far end goes silent is found by keepalive pings and closed.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from kcp.etcd.tunnel import ForwardTarget, Tunnel, TunnelFailure

__all__ = [
    "DEFAULT_KEEPALIVE",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_TUNNELS",
    "Listener",
    "TunnelLoop",
    "TunnelObserver",
    "TunnelOpenFailed",
    "TunnelStats",
]

DEFAULT_MAX_TUNNELS = 512
"""Tunnels kept open at most unless told: twice the default channel pool, for gRPC's extra
dials (the tracker resizes its loop with its pool, ``kcp.tracker.sizing``)."""
DEFAULT_KEEPALIVE = 30.0
"""Seconds of silence after which an open tunnel is pinged (load balancers in front of
API servers drop idle connections after a few minutes)."""
DEFAULT_KEEPALIVE_TIMEOUT = 10.0
"""Seconds a ping may go unanswered before the tunnel is declared dead and closed."""
_TICK = 0.5
"""Seconds between checks of deadlines and keepalives."""
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

_log = structlog.get_logger("kcp.etcd")


class TunnelObserver(Protocol):
    """Told (on the loop's thread; keep it quick) what happens to tunnels, e.g. for metrics."""

    def tunnel_opened(self) -> None: ...

    def tunnel_closed(self) -> None: ...

    def tunnel_failed(self, reason: str) -> None: ...


class TunnelOpenFailed(Exception):
    """A tunnel did not open; ``failure`` says why."""

    def __init__(self, failure: TunnelFailure) -> None:
        super().__init__(f"{failure.reason}: {failure.detail}")
        self.failure = failure


@dataclass(frozen=True)
class TunnelStats:
    """The loop's counts since it was created (for metrics, tests and benchmarks)."""

    open: int
    opening: int
    opened: int
    failed: dict[str, int]
    evicted: int
    listeners: int
    running: bool
    max_open: int = DEFAULT_MAX_TUNNELS
    """The bound now (``TunnelLoop.resize`` changes it)."""


class Listener:
    """A loopback listener (``127.0.0.1``, a free port); each connection opens a tunnel."""

    def __init__(
        self,
        loop: TunnelLoop,
        target: Callable[[], ForwardTarget],
        *,
        timeout: float,
        owner: object,
    ) -> None:
        self._loop = loop
        self.target = target
        """Called on the loop's thread for each connection: must not block (no DNS)."""
        self.timeout = timeout
        self.owner = owner
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.last: TunnelFailure | None = None
        """Why the last tunnel opened for a connection failed; cleared by one that opens."""
        self.closed = False

    def close(self) -> None:
        self._loop.submit(("unlisten", self))


class TunnelLoop:
    """The shared selector loop; thread-safe. Its thread starts with the first tunnel."""

    def __init__(
        self,
        *,
        max_tunnels: int = DEFAULT_MAX_TUNNELS,
        keepalive: float | None = DEFAULT_KEEPALIVE,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        observer: TunnelObserver | None = None,
        name: str = "kcp-tunnels",
    ) -> None:
        self.max_tunnels = _at_least_one(max_tunnels)
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self._observer = observer
        self._name = name
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, _READ, ("wake", None))
        self._commands: collections.deque[tuple[Any, ...]] = collections.deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        # Loop-thread state:
        self._tunnels: OrderedDict[Tunnel, None] = OrderedDict()
        """Every tunnel not yet ended, least recently active first."""
        self._open: set[Tunnel] = set()
        self._listeners: set[Listener] = set()
        self._registered: dict[socket.socket, int] = {}
        self._opened = 0
        self._failed: collections.Counter[str] = collections.Counter()
        self._evicted = 0

    # -- what callers use (any thread) ----------------------------------------------------

    def open(
        self, target: ForwardTarget, *, timeout: float, owner: object = None
    ) -> tuple[socket.socket, Tunnel]:
        """Open a tunnel to ``target`` within ``timeout`` seconds; returns the caller's end
        (a blocking socket) and the tunnel (whose ``failure`` tells why it ended, if it
        ends badly). Raises ``TunnelOpenFailed``."""
        mine, theirs = socket.socketpair()
        theirs.setblocking(False)
        tunnel = Tunnel(target, theirs, deadline=time.monotonic() + timeout)
        tunnel.owner = owner
        self.submit(("add", tunnel))
        # The loop enforces the deadline; waiting longer only guards against a stuck loop.
        if not tunnel.settled.wait(timeout + 2.0):
            self.submit(("close", tunnel, TunnelFailure("timeout", "the tunnel loop is stuck")))
        failure = tunnel.failure
        if failure is not None or not tunnel.was_open:
            mine.close()
            raise TunnelOpenFailed(failure or TunnelFailure("timeout", "no answer"))
        return mine, tunnel

    def listen(
        self, target: Callable[[], ForwardTarget], *, timeout: float, owner: object = None
    ) -> Listener:
        """A loopback listener whose connections each open a tunnel to ``target()``."""
        listener = Listener(self, target, timeout=timeout, owner=owner)
        self.submit(("listen", listener))
        return listener

    def close_owner(self, owner: object) -> None:
        """Close, soon and without waiting, every tunnel and listener opened for ``owner``."""
        self.submit(("close_owner", owner))

    def resize(self, max_tunnels: int) -> None:
        """Keep at most ``max_tunnels`` open from now on. A smaller bound closes nothing at
        once: the least recently active go when the next tunnel opens."""
        self.max_tunnels = _at_least_one(max_tunnels)  # read by the loop's thread only

    def stats(self) -> TunnelStats:
        with self._lock:
            return TunnelStats(
                open=len(self._open),
                opening=len(self._tunnels) - len(self._open),
                opened=self._opened,
                failed=dict(self._failed),
                evicted=self._evicted,
                listeners=len(self._listeners),
                running=self._thread is not None and self._thread.is_alive(),
                max_open=self.max_tunnels,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Close every tunnel and listener and stop the thread."""
        with self._lock:
            thread, self._stopped = self._thread, True
        if thread is None:
            self._shutdown()
            return
        self._wake()
        thread.join(timeout)

    def submit(self, command: tuple[Any, ...]) -> None:
        with self._lock:
            if self._stopped:
                stopped = True
            else:
                stopped = False
                self._commands.append(command)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
        if stopped:
            self._refuse(command)
            return
        self._wake()

    # -- the loop's thread ----------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a wake-up is pending already, or the loop is gone
            self._wake_write.send(b"\0")

    @staticmethod
    def _refuse(command: tuple[Any, ...]) -> None:
        kind = command[0]
        if kind == "add":
            command[1].end(TunnelFailure("closed", "kcp is shutting down", ours=True))
            for sock in command[1].discarded:
                sock.close()
        elif kind == "listen":
            command[1].sock.close()

    def _run(self) -> None:
        next_tick = time.monotonic() + _TICK
        try:
            while True:
                idle = not self._tunnels and not self._listeners
                timeout = None if idle else max(next_tick - time.monotonic(), 0.0)
                for key, mask in self._selector.select(timeout):
                    self._dispatch(key.data, mask)
                if self._commands_done():
                    return
                now = time.monotonic()
                if now >= next_tick or idle:
                    next_tick = now + _TICK
                    for tunnel in list(self._tunnels):
                        self._guarded(
                            tunnel, tunnel.tick, now, self.keepalive, self.keepalive_timeout
                        )
        finally:
            self._shutdown()

    def _dispatch(self, data: tuple[str, Any], mask: int) -> None:
        kind, item = data
        if kind == "wake":
            try:
                while self._wake_read.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
            return
        if kind == "listener":
            self._accept(item)
            return
        tunnel: Tunnel = item
        if tunnel.ended:
            return
        now = time.monotonic()
        readable, writable = bool(mask & _READ), bool(mask & _WRITE)
        payloads = tunnel.payloads
        if kind == "raw":
            self._guarded(tunnel, tunnel.on_raw, readable, writable, now)
        else:
            self._guarded(tunnel, tunnel.on_local, readable, writable, now)
        if tunnel.payloads != payloads and tunnel in self._tunnels:
            # Only payload counts as use: a late port prefix or a pong must not make an
            # idle tunnel look recent.
            self._tunnels.move_to_end(tunnel)

    def _guarded(self, tunnel: Tunnel, step: Callable[..., None], *args: Any) -> None:
        """Run one step of a tunnel; a bug in one tunnel ends that tunnel, not the loop."""
        try:
            step(*args)
        except Exception as exc:
            _log.exception("port-forward tunnel failed", tunnel=repr(tunnel))
            tunnel.end(TunnelFailure("lost", f"internal error: {type(exc).__name__}: {exc}"))
        self._settle(tunnel)

    def _settle(self, tunnel: Tunnel) -> None:
        """Apply what a step did: sockets to let go, registrations, counts."""
        failure = tunnel.failure
        listener = tunnel.listener
        if (
            tunnel.ended
            and failure is not None
            and not failure.ours
            and isinstance(listener, Listener)
        ):
            # Before the sockets close: whoever their closing wakes (gRPC) reads it next.
            listener.last = failure
        for sock in tunnel.discarded:
            self._set(sock, 0, None)
            sock.close()
        tunnel.discarded.clear()
        if tunnel.was_open and tunnel not in self._open and not tunnel.ended:
            with self._lock:
                self._open.add(tunnel)
                self._opened += 1
            if isinstance(tunnel.listener, Listener):
                tunnel.listener.last = None
            self._notify("tunnel_opened")
        if tunnel.ended:
            self._retire(tunnel)
            return
        raw_mask, local_mask = tunnel.masks()
        self._set(tunnel.raw, raw_mask, ("raw", tunnel))
        self._set(tunnel.local, local_mask, ("local", tunnel))

    def _retire(self, tunnel: Tunnel) -> None:
        failure = tunnel.failure
        with self._lock:
            self._tunnels.pop(tunnel, None)
            was_counted = tunnel in self._open
            self._open.discard(tunnel)
            if failure is not None and not failure.ours:
                self._failed[failure.reason] += 1
        if was_counted:
            self._notify("tunnel_closed")
        if failure is not None and not failure.ours:
            self._notify("tunnel_failed", failure.reason)

    def _notify(self, event: str, *args: str) -> None:
        if self._observer is None:
            return
        try:
            getattr(self._observer, event)(*args)
        except Exception:
            _log.exception("tunnel observer failed", tunnel_event=event)

    def _set(self, sock: socket.socket | None, mask: int, data: Any) -> None:
        if sock is None:
            return
        current = self._registered.get(sock)
        if mask == 0:
            if current is not None:
                self._selector.unregister(sock)
                del self._registered[sock]
        elif current is None:
            self._selector.register(sock, mask, data)
            self._registered[sock] = mask
        elif current != mask:
            self._selector.modify(sock, mask, data)
            self._registered[sock] = mask

    def _commands_done(self) -> bool:
        """Run queued commands; True when the loop must stop."""
        while True:
            with self._lock:
                if self._stopped and not self._commands:
                    return True
                if not self._commands:
                    return False
                command = self._commands.popleft()
            kind = command[0]
            if kind == "add":
                self._add(command[1])
            elif kind == "listen":
                listener: Listener = command[1]
                self._listeners.add(listener)
                self._selector.register(listener.sock, _READ, ("listener", listener))
            elif kind == "unlisten":
                self._unlisten(command[1])
            elif kind == "close":
                tunnel, failure = command[1], command[2]
                if not tunnel.ended:
                    self._guarded(tunnel, tunnel.close, failure, time.monotonic())
            elif kind == "close_owner":
                self._close_owner(command[1])

    def _add(self, tunnel: Tunnel) -> None:
        now = time.monotonic()
        live = [t for t in self._tunnels if t.state not in ("closing", "draining")]
        excess = len(live) + 1 - self.max_tunnels
        for oldest in live[: max(excess, 0)]:
            with self._lock:
                self._evicted += 1
            failure = TunnelFailure(
                "closed",
                f"closed by kcp to make room (at most {self.max_tunnels} tunnels are kept open)",
                ours=True,
            )
            self._guarded(oldest, oldest.close, failure, now)
        with self._lock:
            self._tunnels[tunnel] = None
        self._guarded(tunnel, tunnel.start)

    def _accept(self, listener: Listener) -> None:
        while not listener.closed:
            try:
                conn, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                target = listener.target()
            except Exception as exc:
                conn.close()
                listener.last = TunnelFailure("unreachable", str(exc))
                continue
            tunnel = Tunnel(target, conn, deadline=time.monotonic() + listener.timeout)
            tunnel.owner = listener.owner
            tunnel.listener = listener
            self._add(tunnel)

    def _unlisten(self, listener: Listener) -> None:
        if listener.closed:
            return
        listener.closed = True
        if listener in self._listeners:
            self._listeners.discard(listener)
            self._selector.unregister(listener.sock)
        listener.sock.close()

    def _close_owner(self, owner: object) -> None:
        now = time.monotonic()
        failure = TunnelFailure(
            "closed",
            "closed by kcp: the cluster was evicted, went down, or its kubeconfig changed",
            ours=True,
        )
        for tunnel in [t for t in self._tunnels if t.owner is owner]:
            self._guarded(tunnel, tunnel.close, failure, now)
        for listener in [item for item in self._listeners if item.owner is owner]:
            self._unlisten(listener)

    def _shutdown(self) -> None:
        failure = TunnelFailure("closed", "kcp is shutting down", ours=True)
        for tunnel in list(self._tunnels):
            self._guarded(tunnel, tunnel.end, failure)
        for listener in list(self._listeners):
            self._unlisten(listener)
        with self._lock:
            pending = list(self._commands)
            self._commands.clear()
        for command in pending:
            self._refuse(command)
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()


def _at_least_one(max_tunnels: int) -> int:
    if max_tunnels < 1:
        raise ValueError(f"a tunnel loop keeps at least one tunnel, not {max_tunnels}")
    return max_tunnels
