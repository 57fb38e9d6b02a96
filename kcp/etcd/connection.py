"""One connection to one etcd endpoint, with mutual TLS built from bytes in memory.

Two transports reach the same calls: ``"gateway"`` (etcd's JSON gateway over
HTTP/1.1, ``kcp.etcd.gateway``) and ``"grpc"`` (a gRPC channel, below). This
module opens either; the rest of it is the gRPC side.

``etcd3.client()`` reads its TLS material from files; the product never writes
key material to disk, so the channel is built here from PEM bytes with
``grpc.ssl_channel_credentials`` (which also verifies the server's certificate
against the CA given) and handed to an ``etcd3.Etcd3Client`` for its stubs.
After ``open_connection`` returns, the private key lives only inside gRPC's
credentials object.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# Importing etcd3 is safe here: the `kcp` package, imported before any of its
# modules, has already chosen the protobuf backend etcd3's generated code needs.
import etcd3
import grpc

import kcp.certs
from kcp.etcd.dial import DIRECT, Dialer, LocalTarget
from kcp.etcd.errors import DEFAULT_CA_SOURCE, EtcdTLSError, EtcdUnavailable
from kcp.etcd.gateway import GatewayConnection, open_gateway_connection
from kcp.etcd.timeouts import DEFAULT_DIAL_TIMEOUT

__all__ = [
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "Connection",
    "EtcdConnection",
    "EtcdTLS",
    "Transport",
    "normalize_endpoint",
    "open_connection",
]

Transport = Literal["gateway", "grpc"]
"""How kcp talks to a workload etcd: its JSON gateway over HTTP/1.1, or gRPC."""
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)
DEFAULT_TRANSPORT: Transport = "gateway"
"""What kcp ships (``TrackerOptions.etcd_transport``, ``--etcd-transport``) and what every
entry point here uses unless told otherwise: the gateway needs no threads of its own,
while gRPC's C core keeps a thread pool that grows with dialling load."""


# gRPC core's connectivity states (``grpc._cython.cygrpc.ConnectivityState``).
_READY = 2
_TRANSIENT_FAILURE = 3
_SHUTDOWN = 4


def _settle(channel: grpc.Channel, timeout: float) -> int:
    """Start connecting and wait on this thread until the channel is up or has failed.

    Returns the core connectivity state reached, or an earlier one after ``timeout``.
    ``Channel.subscribe`` would do the same with a polling thread per channel that
    lives on after it is unsubscribed: at a thousand clusters that was hundreds of
    short-lived threads a minute. The channel's core object watches without one.
    """
    core: Any = channel._channel  # grpcio is pinned in constraints.txt
    deadline = time.time() + timeout
    state = int(core.check_connectivity_state(True))
    while state not in (_READY, _TRANSIENT_FAILURE, _SHUTDOWN):
        if deadline - time.time() <= 0:
            break
        core.watch_connectivity_state(state, deadline)
        state = int(core.check_connectivity_state(False))
    return state


@dataclass(frozen=True)
class EtcdTLS:
    """What a client needs to talk to one cluster's etcd: its CA and our client pair, as PEM.

    ``server_name`` overrides the name the server's certificate is checked against
    (only when the certificate names something other than the address dialled).
    ``ca_source`` says where ``ca_pem`` came from (e.g. ``Secret ns/c1-etcd``): an
    error about an untrusted server names it. The repr never shows the key.
    """

    ca_pem: bytes = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    server_name: str | None = None
    ca_source: str = field(default=DEFAULT_CA_SOURCE, compare=False, repr=False)

    @property
    def ca_fingerprint(self) -> str:
        return _digest(self.ca_pem)

    @property
    def cert_fingerprint(self) -> str:
        return _digest(self.cert_pem)

    def __repr__(self) -> str:
        return (
            f"EtcdTLS(ca={self.ca_fingerprint[:12]}, cert={self.cert_fingerprint[:12]}, "
            f"server_name={self.server_name!r})"
        )


def _digest(pem: bytes) -> str:
    """SHA-256 of the PEM text: the same certificate from the same cache hashes the same."""
    return hashlib.sha256(pem.strip()).hexdigest()


def normalize_endpoint(endpoint: str) -> str:
    """``host:port`` from ``https://host:port``, ``host:port`` or a URL with a trailing slash."""
    target = endpoint.strip()
    for scheme in ("https://", "http://", "unix://"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    target = target.rstrip("/")
    if not target or ":" not in target:
        raise ValueError(
            f"etcd endpoint {endpoint!r} has no port; use host:port or https://host:port"
        )
    return target


class _ChannelEtcd3Client(etcd3.Etcd3Client):  # type: ignore[misc]
    """``etcd3.Etcd3Client`` around a channel we built, instead of one it opens from files.

    Mirrors what ``Etcd3Client.__init__`` (etcd3 0.12) sets up after creating its
    channel; no authentication token (etcd's client-certificate auth is used).
    """

    def __init__(self, target: str, channel: grpc.Channel, timeout: float) -> None:
        self._url = target
        self.metadata = None
        self.call_credentials = None
        self.uses_secure_channel = True
        self.channel = channel
        self.timeout = timeout
        self.kvstub = etcd3.etcdrpc.KVStub(channel)
        self.watcher = etcd3.watch.Watcher(etcd3.etcdrpc.WatchStub(channel), timeout=timeout)
        self.clusterstub = etcd3.etcdrpc.ClusterStub(channel)
        self.leasestub = etcd3.etcdrpc.LeaseStub(channel)
        self.maintenancestub = etcd3.etcdrpc.MaintenanceStub(channel)
        self.transactions = etcd3.Transactions()


class Connection:
    """An open channel to one endpoint, its etcd3 stubs, and whether it is known connected.

    Dialling is lazy and bounded: ``ensure_connected`` waits at most the dial
    timeout, and returns at once while the channel is known to be up. After a
    transport failure ``reset`` replaces the channel with a fresh one on the same
    credentials: a gRPC channel that failed stays in reconnect backoff (up to
    minutes) and would report a member that came back as still down.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: grpc.ChannelCredentials,
        *,
        options: Sequence[tuple[str, Any]],
        call_timeout: float,
        ca_source: str = DEFAULT_CA_SOURCE,
        local: LocalTarget | None = None,
        member_name: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ca_source = ca_source
        self.member_name = member_name
        """The member a Pod endpoint reaches (its node's name), else None."""
        self._local = local
        """Where gRPC dials when it is not the endpoint itself (a tunnel's loopback listener)."""
        self._credentials = credentials
        self._options = list(options)
        self._call_timeout = call_timeout
        self._lock = threading.Lock()
        self._closed = False
        self._connected = False
        self.resets = 0
        self.channel, self.etcd3 = self._new_channel()

    def __repr__(self) -> str:
        return f"Connection({self.endpoint!r}, closed={self._closed})"

    def _new_channel(self) -> tuple[grpc.Channel, Any]:
        target = self._local.address if self._local is not None else self.endpoint
        channel = grpc.secure_channel(target, self._credentials, options=self._options)
        return channel, _ChannelEtcd3Client(self.endpoint, channel, self._call_timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def tunnel_problem(self) -> str | None:
        """Why the tunnel under the last connection gRPC made failed, if one did."""
        return self._local.last_failure() if self._local is not None else None

    def ensure_connected(self, timeout: float) -> None:
        """Wait until the channel is up or has failed; raise ``EtcdUnavailable`` after ``timeout``.

        On a failed attempt (refused, TLS error) this returns so that the call that
        follows fails at once with gRPC's reason, which ``translate`` classifies.
        """
        if self._closed:
            raise EtcdUnavailable(
                f"etcd connection to {self.endpoint} was closed (evicted from the channel pool "
                "or closed by its owner); get a new client",
                endpoint=self.endpoint,
            )
        if self._connected:
            return
        try:
            state = _settle(self.channel, timeout)
        except ValueError:  # gRPC refuses to watch a channel closed meanwhile
            raise EtcdUnavailable(
                f"etcd connection to {self.endpoint} was closed while dialling; retry",
                endpoint=self.endpoint,
            ) from None
        if state == _READY:
            self._connected = True
        elif state not in (_TRANSIENT_FAILURE, _SHUTDOWN):
            raise EtcdUnavailable(
                f"etcd at {self.endpoint} did not complete a connection within the dial "
                f"timeout of {timeout:g}s (is the address right and the member answering?)",
                endpoint=self.endpoint,
            )
        # else it failed fast: the call that follows reports gRPC's reason.

    def reset(self) -> None:
        """Replace the channel by a fresh one (after a transport failure); no-op when closed."""
        with self._lock:
            if self._closed:
                return
            old = self.channel
            old.close()
            self.channel, self.etcd3 = self._new_channel()
            self._connected = False
            self.resets += 1

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.channel.close()
                if self._local is not None:
                    self._local.close()


EtcdConnection = Connection | GatewayConnection
"""An open connection of either transport."""


def open_connection(
    endpoint: str,
    tls: EtcdTLS,
    *,
    call_timeout: float,
    options: tuple[tuple[str, Any], ...] = (),
    transport: Transport = DEFAULT_TRANSPORT,
    dialer: Dialer = DIRECT,
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
) -> EtcdConnection:
    """Open (lazily; no network yet) a mutual-TLS connection to ``endpoint``.

    ``options`` are gRPC channel options (ignored by the gateway transport). ``dialer``
    opens the connections underneath (a port-forward for a Pod endpoint); gRPC dials
    its loopback listener, each connection opening within ``dial_timeout``.

    The material is checked first, so garbage, a key that does not match the
    certificate or an expired certificate raise ``EtcdTLSError`` saying so,
    instead of an opaque handshake failure later.
    """
    target = normalize_endpoint(endpoint)
    try:
        kcp.certs.decode_certificates(tls.ca_pem, what="etcd CA certificate")
        kcp.certs.load_key_pair(
            tls.cert_pem, tls.key_pem, what="etcd client", skip_rsa_validation=True
        )
    except kcp.certs.CertificateError as exc:
        raise EtcdTLSError(f"cannot connect to etcd at {target}: {exc}", endpoint=target) from None
    if transport == "gateway":
        return open_gateway_connection(
            target,
            tls.ca_pem,
            tls.cert_pem,
            tls.key_pem,
            server_name=tls.server_name,
            ca_source=tls.ca_source,
            dialer=dialer,
        )
    if transport != "grpc":
        raise ValueError(f"unknown etcd transport {transport!r}; use one of {TRANSPORTS}")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem,
        private_key=tls.key_pem,
        certificate_chain=tls.cert_pem,
    )
    # A subchannel of its own, so a reset channel never inherits a failed one's backoff.
    channel_options = [("grpc.use_local_subchannel_pool", 1), *options]
    local = dialer.listen(target, dial_timeout)
    server_name = tls.server_name or dialer.server_name(target)
    if not server_name and local.address != target:
        server_name = target.rpartition(":")[0].rpartition("/")[2]
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    return Connection(
        target,
        credentials,
        options=channel_options,
        call_timeout=call_timeout,
        ca_source=tls.ca_source,
        local=None if local.address == target else local,
        member_name=dialer.server_name(target),
    )
