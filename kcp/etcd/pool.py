"""A bounded, reused set of open etcd connections (gRPC channels or gateway connections).

The expensive part of talking to a workload etcd is the client key, which the
tracker caches per cluster; channels are cheap to re-open, so they are kept in
an LRU of bounded size (not one per cluster forever). A channel is keyed by the
endpoint and the fingerprints of the client certificate and the CA, so a renewed
certificate or a rotated CA gets a fresh channel and the old one ages out.

The pool never stores key material: it is handed to gRPC's credentials or to an
``ssl`` context when a connection is opened and lives only there. One pool
opens connections of one transport.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kcp.etcd.connection import (
    DEFAULT_TRANSPORT,
    EtcdConnection,
    EtcdTLS,
    Transport,
    normalize_endpoint,
    open_connection,
)
from kcp.etcd.dial import DIRECT, Dialer
from kcp.etcd.timeouts import EtcdTimeouts

__all__ = ["DEFAULT_MAX_CHANNELS", "ChannelKey", "ChannelPool", "PoolStats"]

DEFAULT_MAX_CHANNELS = 256
"""Open channels kept at most unless told; size it above the endpoints in use (the
tracker resizes its pool as its fleet changes, ``kcp.tracker.sizing``)."""


@dataclass(frozen=True)
class ChannelKey:
    """What makes two channels interchangeable: same target reached the same way (``route``:
    directly, or through one API server's port-forward), same client cert, same CA."""

    endpoint: str
    cert_fingerprint: str
    ca_fingerprint: str
    server_name: str | None = None
    route: str = "direct"

    @classmethod
    def for_tls(cls, endpoint: str, tls: EtcdTLS, dialer: Dialer = DIRECT) -> ChannelKey:
        target = normalize_endpoint(endpoint)
        return cls(
            target,
            tls.cert_fingerprint,
            tls.ca_fingerprint,
            tls.server_name,
            dialer.route(target),
        )

    def same_material(self, other: ChannelKey) -> bool:
        """Same endpoint and certificates, whichever way it is reached."""
        return (self.endpoint, self.cert_fingerprint, self.ca_fingerprint, self.server_name) == (
            other.endpoint,
            other.cert_fingerprint,
            other.ca_fingerprint,
            other.server_name,
        )


@dataclass(frozen=True)
class PoolStats:
    """Counters since the pool was created (for metrics and tests)."""

    size: int
    max_size: int
    opened: int
    reused: int
    evicted: int


class ChannelPool:
    """LRU of open connections (``EtcdConnection``); thread-safe.

    ``get`` returns the open connection for the key or opens one; when the pool
    is full the least recently used connection is closed. A client still holding
    an evicted connection gets ``EtcdUnavailable`` on its next call and should
    ask the pool again.
    """

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_CHANNELS,
        *,
        timeouts: EtcdTimeouts | None = None,
        channel_options: tuple[tuple[str, Any], ...] = (),
        transport: Transport = DEFAULT_TRANSPORT,
    ) -> None:
        self.max_size = _at_least_one(max_size)
        self.timeouts = timeouts or EtcdTimeouts()
        self._channel_options = channel_options
        self.transport: Transport = transport
        self._connections: OrderedDict[ChannelKey, EtcdConnection] = OrderedDict()
        self._lock = threading.Lock()
        self._opened = 0
        self._reused = 0
        self._evicted = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._connections

    def resize(self, max_size: int) -> None:
        """Keep at most ``max_size`` connections from now on. A smaller bound closes nothing
        at once: the least recently used go when the next connection is opened."""
        bound = _at_least_one(max_size)
        with self._lock:
            self.max_size = bound

    def get(self, endpoint: str, tls: EtcdTLS, *, dialer: Dialer | None = None) -> EtcdConnection:
        """The open connection for (``endpoint``, ``tls``) by ``dialer``'s route, opening one
        if needed (nothing is dialled yet)."""
        dialer = dialer or DIRECT
        key = ChannelKey.for_tls(endpoint, tls, dialer)
        with self._lock:
            found = self._connections.get(key)
            if found is not None and not found.closed:
                self._connections.move_to_end(key)
                self._reused += 1
                return found
        # Opening validates the material (parsing a certificate): done outside the lock.
        fresh = open_connection(
            key.endpoint,
            tls,
            call_timeout=self.timeouts.call,
            options=self._channel_options,
            transport=self.transport,
            dialer=dialer,
            dial_timeout=self.timeouts.dial,
        )
        evicted: list[EtcdConnection] = []
        with self._lock:
            found = self._connections.get(key)
            if found is not None and not found.closed:
                # Another thread opened it meanwhile: keep theirs.
                self._connections.move_to_end(key)
                self._reused += 1
                evicted.append(fresh)
                result = found
            else:
                self._connections[key] = fresh
                self._opened += 1
                while len(self._connections) > self.max_size:
                    _, oldest = self._connections.popitem(last=False)
                    evicted.append(oldest)
                    self._evicted += 1
                result = fresh
        for connection in evicted:
            connection.close()
        return result

    def discard(self, endpoint: str, tls: EtcdTLS) -> None:
        """Close and forget the connections to ``endpoint`` with ``tls``, by any route."""
        wanted = ChannelKey.for_tls(endpoint, tls)
        self._close_where(wanted.same_material)

    def close_route(self, route: str) -> int:
        """Close every connection reached by ``route`` (its API server's credentials changed)."""
        return self._close_where(lambda key: key.route == route)

    def close_endpoints(self, endpoints: Iterable[str]) -> int:
        """Close every connection to these endpoints (a deleted cluster); returns how many."""
        targets = {normalize_endpoint(e) for e in endpoints}
        return self._close_where(lambda key: key.endpoint in targets)

    def close_all(self) -> None:
        """Close every connection; the pool stays usable."""
        self._close_where(lambda _key: True)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                size=len(self._connections),
                max_size=self.max_size,
                opened=self._opened,
                reused=self._reused,
                evicted=self._evicted,
            )

    def _close_where(self, matches: Callable[[ChannelKey], bool]) -> int:
        with self._lock:
            keys = [key for key in self._connections if matches(key)]
            closing = [self._connections.pop(key) for key in keys]
        for connection in closing:
            connection.close()
        return len(closing)


def _at_least_one(max_size: int) -> int:
    if max_size < 1:
        raise ValueError(f"a channel pool holds at least one channel, not {max_size}")
    return max_size
