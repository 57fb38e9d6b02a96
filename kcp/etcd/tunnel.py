"""One port-forward tunnel: TLS to the workload API server, upgraded to a websocket that
speaks Kubernetes' port-forward subprotocol, bridged to a local socket.

Everything here runs on the shared I/O loop's thread (``kcp.etcd.ioloop``) and never
blocks: the sockets are non-blocking, TLS is an ``ssl.SSLObject`` over memory buffers
and the websocket is ``wsproto`` (sans-IO). What this module adds is the framing of
``v4.channel.k8s.io`` as the kubelet speaks it: each message starts with its channel
byte (0 data, 1 error), and the first two bytes on each channel are the forwarded
port, little-endian. A message on the error channel is the kubelet's reason for
giving up (typically: nothing listens on the Pod's port).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import ProtocolError

__all__ = [
    "SUBPROTOCOL",
    "ForwardTarget",
    "Tunnel",
    "TunnelFailure",
]

SUBPROTOCOL = "v4.channel.k8s.io"
"""The kubelet's binary channel protocol for port-forward over websockets."""
DATA_CHANNEL = 0
ERROR_CHANNEL = 1
_PORT_PREFIX = 2
HIGH_WATER = 256 * 1024
"""Bytes buffered towards one side before the other side is no longer read."""
_READ_SIZE = 64 * 1024
_TEXT_LIMIT = 4096
"""Bytes kept of an error message or a refusal's body."""
_DRAIN_TIME = 5.0
"""Seconds the local side is given to take what arrived before the far end closed."""

TunnelState = Literal["connecting", "tls", "upgrading", "open", "closing", "draining", "closed"]


@dataclass(frozen=True, eq=False)
class ForwardTarget:
    """Where one tunnel goes: the API server to ask and the request that opens the forward.

    ``addresses`` are resolved beforehand on a caller's thread (the loop never waits
    for DNS). ``headers`` carry the credentials (a bearer token) and stay out of reprs.
    """

    host: str
    """The API server's host name, for SNI, certificate checks and the Host header."""
    port: int
    addresses: tuple[tuple[int, Any], ...]
    """``(family, sockaddr)`` to try in turn."""
    path: str
    """E.g. ``/api/v1/namespaces/kube-system/pods/etcd-n1/portforward?ports=2379``."""
    forwarded_port: int
    context: ssl.SSLContext = field(repr=False)
    headers: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class TunnelFailure:
    """Why a tunnel did not open or ended badly; ``ours`` when kcp itself closed it."""

    reason: str
    """One of ``EtcdTunnelError``'s reasons."""
    detail: str
    status: int | None = None
    """The API server's HTTP status, when it refused the upgrade."""
    ours: bool = False


class Tunnel:
    """The state of one tunnel; only the loop thread touches it after ``start``.

    ``settled`` is set once the tunnel is open or has ended: the opener waits on it.
    ``failure`` (set before the local socket is closed) says why it ended badly.
    """

    def __init__(self, target: ForwardTarget, local: socket.socket, *, deadline: float) -> None:
        self.target = target
        self.local: socket.socket | None = local
        self.raw: socket.socket | None = None
        self.state: TunnelState = "connecting"
        self.deadline = deadline
        """Until open: when the open gives up. Closing or draining: when it ends anyway."""
        self.failure: TunnelFailure | None = None
        self.settled = threading.Event()
        self.was_open = False
        self.last_received = 0.0
        self.payloads = 0
        """Payload chunks moved either way: what "recently used" means (pings and the
        kubelet's port prefixes do not count)."""
        self.ping_sent: float | None = None
        self.to_raw = bytearray()
        self.to_local = bytearray()
        self.owner: object = None
        self.listener: object = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = target.context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=target.host
        )
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._address = 0
        self._channel: int | None = None
        self._prefix_left = {DATA_CHANNEL: _PORT_PREFIX, ERROR_CHANNEL: _PORT_PREFIX}
        self._error_text = bytearray()
        self._refusal: tuple[int, bytearray] | None = None
        self._now = 0.0
        self.discarded: list[socket.socket] = []
        """Sockets this tunnel is done with: the loop unregisters, then closes them."""

    def __repr__(self) -> str:
        return f"Tunnel({self.target.host}:{self.target.port}{self.target.path}, {self.state})"

    @property
    def ended(self) -> bool:
        return self.state == "closed"

    # -- what the loop calls --------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting to the next address (non-blocking)."""
        while self._address < len(self.target.addresses):
            family, sockaddr = self.target.addresses[self._address]
            self._address += 1
            raw = socket.socket(family, socket.SOCK_STREAM)
            raw.setblocking(False)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = raw.connect_ex(sockaddr)
            if code in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                self.raw = raw
                return
            raw.close()  # never registered
            last = f"{errno.errorcode.get(code, str(code))} ({_strerror(code)})"
            if self._address >= len(self.target.addresses):
                self.end(TunnelFailure("unreachable", f"connect: {last}"))
                return
        self.end(TunnelFailure("unreachable", "no address to connect to"))

    def masks(self) -> tuple[int, int]:
        """The selector events wanted on (raw, local): reading stops while the other
        side's buffer is full, writing is asked for only with bytes to write."""
        read, write = 1, 2  # selectors.EVENT_READ, EVENT_WRITE
        if self.state == "closed":
            return 0, 0
        if self.state == "connecting":
            return write, 0
        raw = write if self.to_raw else 0
        if self.state != "draining" and len(self.to_local) < HIGH_WATER:
            raw |= read
        local = write if self.to_local else 0
        if self.state == "open" and len(self.to_raw) < HIGH_WATER:
            local |= read
        return raw, local

    def on_raw(self, readable: bool, writable: bool, now: float) -> None:
        self._now = now
        if self.state == "connecting":
            if writable:
                self._connected()
            return
        if writable:
            self._send_raw()
        if readable and self.state != "closed":
            self._receive_raw(now)

    def on_local(self, readable: bool, writable: bool, now: float) -> None:
        self._now = now
        if writable:
            self._send_local()
        if readable and self.state == "open":
            self._receive_local()

    def tick(self, now: float, keepalive: float | None, keepalive_timeout: float) -> None:
        """Deadlines and keepalive pings (the loop calls this about once a second)."""
        self._now = now
        if self.state == "closed":
            return
        if self.state in ("connecting", "tls", "upgrading") and now >= self.deadline:
            self.end(TunnelFailure("timeout", self._step()))
        elif self.state in ("closing", "draining") and now >= self.deadline:
            self.end(None)
        elif self.state == "open" and keepalive is not None:
            if self.ping_sent is not None:
                if now - self.ping_sent >= keepalive_timeout:
                    self.end(
                        TunnelFailure(
                            "lost", f"no answer to a keepalive ping within {keepalive_timeout:g}s"
                        )
                    )
            elif now - self.last_received >= keepalive:
                self.ping_sent = now
                self._ws_send(Ping(payload=b"kcp"))

    def close(self, failure: TunnelFailure | None, now: float) -> None:
        """Close politely (a websocket close, then the sockets), or at once if not open."""
        self._now = now
        if self.state != "open":
            self.end(failure)
            return
        if failure is not None and self.failure is None:
            self.failure = failure
        self._close_local()
        self._ws_send(CloseConnection(code=1000))
        self.state = "closing"
        self.deadline = now + 1.0

    def end(self, failure: TunnelFailure | None) -> None:
        """Record ``failure`` (first one wins), close both sockets, wake the opener.

        The sockets go to ``discarded`` for the loop to unregister and close.
        """
        if failure is not None and self.failure is None:
            self.failure = failure
        self.state = "closed"
        if self.local is not None and self.to_local:
            with contextlib.suppress(OSError):  # a last chance for what arrived
                self.local.send(self.to_local)
        self.to_local.clear()
        self._close_local()
        if self.raw is not None:
            self.discarded.append(self.raw)
            self.raw = None
        self.settled.set()

    # -- internals ------------------------------------------------------------------------

    def _step(self) -> str:
        return {
            "connecting": "still connecting to the API server",
            "tls": "still in the TLS handshake with the API server",
            "upgrading": "the API server has not answered the port-forward request",
        }.get(self.state, self.state)

    def _connected(self) -> None:
        assert self.raw is not None
        code = self.raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.discarded.append(self.raw)
            self.raw = None
            if self._address < len(self.target.addresses):
                self.start()
                return
            reason = errno.errorcode.get(code, str(code))
            self.end(TunnelFailure("unreachable", f"connect: {reason} ({_strerror(code)})"))
            return
        self.state = "tls"
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except ssl.SSLError as exc:
            self.end(TunnelFailure("tls", str(exc)))
            return
        self.state = "upgrading"
        headers = [*self.target.headers]
        self._ws_send(
            Request(
                host=_host_header(self.target.host, self.target.port),
                target=self.target.path,
                subprotocols=[SUBPROTOCOL],
                extra_headers=headers,
            )
        )

    def _ws_send(self, event: Event) -> None:
        try:
            data = self._ws.send(event)
        except ProtocolError:
            return  # the websocket is closing or closed already: nothing more to say
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            self.end(TunnelFailure("lost", f"TLS: {exc}"))
            return
        self._flush_tls()

    def _flush_tls(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self.to_raw += pending
            self._send_raw()

    def _send_raw(self) -> None:
        if self.raw is None or not self.to_raw:
            return
        try:
            sent = self.raw.send(self.to_raw)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.end(TunnelFailure("lost", f"sending to the API server: {exc}"))
            return
        del self.to_raw[:sent]
        if self.state == "closing" and not self.to_raw and self._ws.state is ConnectionState.CLOSED:
            self.end(None)

    def _receive_raw(self, now: float) -> None:
        assert self.raw is not None
        try:
            data = self.raw.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"the connection to the API server failed: {exc}")
            return
        if not data:
            self._lost("the API server closed the connection without closing the websocket")
            return
        self.last_received = now
        self.ping_sent = None
        self._incoming.write(data)
        if self.state == "tls":
            self._handshake()
            return
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._lost("the API server ended the TLS session")
                return
            except ssl.SSLError as exc:
                self._lost(f"TLS: {exc}")
                return
            if not chunk:
                break
            chunks.append(chunk)
        self._flush_tls()
        if chunks:
            try:
                self._ws.receive_data(b"".join(chunks))
            except ProtocolError as exc:
                self.end(TunnelFailure("rejected", f"not a websocket answer: {exc}"))
                return
            self._events()

    def _lost(self, detail: str) -> None:
        if self.state in ("closing", "draining"):
            self.end(None)
        elif self.state == "upgrading" and self._refusal is not None:
            self._refused()
        else:
            self.end(TunnelFailure("lost", detail))

    def _events(self) -> None:
        for event in self._ws.events():
            if self.state == "closed":
                return
            if isinstance(event, AcceptConnection):
                self.state = "open"
                self.was_open = True
                self.settled.set()
            elif isinstance(event, RejectConnection):
                self._refusal = (event.status_code, bytearray())
                if not event.has_body:
                    self._refused()
            elif isinstance(event, RejectData):
                if self._refusal is not None:
                    body = self._refusal[1]
                    body += event.data[: max(_TEXT_LIMIT - len(body), 0)]
                if event.body_finished:
                    self._refused()
            elif isinstance(event, BytesMessage):
                self._message(bytes(event.data), event.message_finished)
            elif isinstance(event, Ping):
                self._ws_send(event.response())
            elif isinstance(event, Pong):
                self.ping_sent = None
            elif isinstance(event, CloseConnection):
                self._remote_close(event)
            else:  # a text message: not the binary channel protocol we asked for
                self.end(TunnelFailure("rejected", f"unexpected {type(event).__name__}"))

    def _refused(self) -> None:
        status, body = self._refusal or (0, bytearray())
        self.end(TunnelFailure(_REFUSALS.get(status, "rejected"), _message_of(body), status=status))

    def _message(self, data: bytes, finished: bool) -> None:
        if self._channel is None:
            if not data:
                return
            self._channel, data = data[0], data[1:]
        channel = self._channel
        if finished:
            self._channel = None
        if channel not in self._prefix_left:
            self.end(TunnelFailure("rejected", f"a message on unknown channel {channel}"))
            return
        skip = min(self._prefix_left[channel], len(data))
        self._prefix_left[channel] -= skip
        data = data[skip:]
        if channel == DATA_CHANNEL:
            if data and self.local is not None:
                self.payloads += 1
                self.to_local += data
                self._send_local()
            return
        self._error_text += data[: max(_TEXT_LIMIT - len(self._error_text), 0)]
        if finished and self._error_text and self.failure is None:
            # Recorded now, before the kubelet closes the forward and the local side sees EOF.
            text = bytes(self._error_text).decode("utf-8", "replace").strip()
            self.failure = TunnelFailure("port", text)

    def _remote_close(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._ws_send(event.response())
        if event.code not in (1000, 1001, 1005) and self.failure is None:
            detail = f"the websocket was closed with code {event.code}"
            if event.reason:
                detail += f": {event.reason}"
            self.failure = TunnelFailure("lost", detail)
        if self.state == "closing" or not self.to_local or self.local is None:
            self.end(None)
            return
        self.state = "draining"
        self.deadline = self._now + _DRAIN_TIME

    def _receive_local(self) -> None:
        assert self.local is not None
        try:
            data = self.local.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the caller is done with the connection
            self._close_local()
            self._ws_send(CloseConnection(code=1000))
            self.state = "closing"
            self.deadline = self._now + 1.0
            return
        self.payloads += 1
        self._ws_send(BytesMessage(data=bytes([DATA_CHANNEL]) + data))

    def _send_local(self) -> None:
        if self.local is None or not self.to_local:
            return
        try:
            sent = self.local.send(self.to_local)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.to_local.clear()
            self.close(None, self._now)
            return
        del self.to_local[:sent]
        if self.state == "draining" and not self.to_local:
            self.end(None)

    def _close_local(self) -> None:
        if self.local is not None:
            self.discarded.append(self.local)
            self.local = None


_REFUSALS = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


def _message_of(body: bytes | bytearray) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else the body as text."""
    text = bytes(body).decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text
    message = document.get("message") if isinstance(document, dict) else None
    return str(message) if message else text


def _host_header(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 443 else f"{shown}:{port}"


def _strerror(code: int) -> str:
    return os.strerror(code)
