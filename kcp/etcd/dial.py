"""How a connection to an etcd endpoint is opened: the dial seam of both transports.

The JSON gateway asks a ``Dialer`` for a connected stream socket, which TLS then
wraps; gRPC dials by address itself, so it asks for a ``LocalTarget``, a loopback
address whose connections reach the endpoint. ``DIRECT`` dials ``host:port``
over TCP; ``kcp.etcd.portforward`` reaches a Pod through a port-forward via the
workload cluster's API server, as Cluster API does.

An endpoint names a host (``10.0.0.5:2379``) or a Pod (``kube-system/etcd-n1:2379``:
a ``/`` never appears in a host name), so the reconciler chooses the route by the
endpoints it asks for (``--etcd-access``) and a dialer serves both kinds.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from kcp.etcd.errors import EtcdTunnelError

__all__ = [
    "DEFAULT_ETCD_ACCESS",
    "DIRECT",
    "ETCD_ACCESS_MODES",
    "Dialed",
    "Dialer",
    "DirectDialer",
    "EtcdAccessMode",
    "LocalTarget",
    "PodEndpoint",
    "pod_endpoint",
]

EtcdAccessMode = Literal["port-forward", "direct"]
"""How kcp reaches each member (``--etcd-access``): through a port-forward via the workload
API server to the Pod ``etcd-<node>``, as Cluster API does, or at the node's address."""
ETCD_ACCESS_MODES: tuple[EtcdAccessMode, ...] = get_args(EtcdAccessMode)
DEFAULT_ETCD_ACCESS: EtcdAccessMode = "port-forward"
"""Cluster API's way: on real infrastructure only the API server's endpoint is reachable."""


@dataclass(frozen=True)
class PodEndpoint:
    """A Pod's port, written ``namespace/pod:port`` wherever an endpoint is expected."""

    namespace: str
    pod: str
    port: int

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}:{self.port}"

    @classmethod
    def parse(cls, endpoint: str) -> PodEndpoint | None:
        """The Pod ``endpoint`` names, or None when it names a host."""
        where, _, port = endpoint.rpartition(":")
        namespace, slash, pod = where.partition("/")
        if not slash or not namespace or not pod or "/" in pod or not port.isdigit():
            return None
        return cls(namespace, pod, int(port))


def pod_endpoint(namespace: str, pod: str, port: int) -> str:
    """The endpoint string of a Pod's port (``kube-system/etcd-n1:2379``)."""
    return str(PodEndpoint(namespace, pod, port))


@dataclass(frozen=True)
class Dialed:
    """A connected stream socket; ``why_closed`` says why a tunnel under it failed, if one did.

    Ask after the socket reached end of file: a tunnel records its failure before it
    closes the socket, so the answer is there by then. None means nothing failed (the
    far end closed the connection, or no tunnel is involved).
    """

    sock: socket.socket
    why_closed: Callable[[], str | None] = field(default=lambda: None)


class LocalTarget(Protocol):
    """A ``host:port`` for gRPC to dial, whose connections reach one endpoint."""

    @property
    def address(self) -> str: ...

    def last_failure(self) -> str | None:
        """Why the last connection gRPC made could not reach the endpoint (None if none failed)."""

    def close(self) -> None: ...


class Dialer(Protocol):
    """Opens connections to endpoints; thread-safe; never writes key material anywhere."""

    def route(self, endpoint: str) -> str:
        """Which way ``endpoint`` is reached: connections by different routes are not shared."""

    def server_name(self, endpoint: str) -> str | None:
        """The name the server's certificate must carry when it is not the host dialled.

        In kubeadm's layout the name of the node, which is also the etcd member's name."""

    def connect(self, endpoint: str, timeout: float) -> Dialed:
        """A connected socket within ``timeout`` seconds.

        Raises ``TimeoutError``, ``OSError`` (unreachable) or ``EtcdTunnelError``."""

    def listen(self, endpoint: str, timeout: float) -> LocalTarget:
        """A local address for gRPC; each connection to it opens within ``timeout``."""


@dataclass(frozen=True)
class _Itself:
    """The endpoint itself, for gRPC to dial directly."""

    address: str

    def last_failure(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class DirectDialer:
    """TCP to ``host:port``; a Pod endpoint has no route here (it needs a port-forward)."""

    def route(self, endpoint: str) -> str:
        return "direct"

    def server_name(self, endpoint: str) -> str | None:
        return None

    def connect(self, endpoint: str, timeout: float) -> Dialed:
        self._refuse_pod(endpoint)
        host, _, port = endpoint.rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        # http.client sends headers and body in two writes: without this, Nagle holds
        # the body back until the server's delayed ACK (40 ms per request).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Dialed(sock)

    def listen(self, endpoint: str, timeout: float) -> LocalTarget:
        self._refuse_pod(endpoint)
        return _Itself(endpoint)

    @staticmethod
    def _refuse_pod(endpoint: str) -> None:
        pod = PodEndpoint.parse(endpoint)
        if pod is not None:
            raise EtcdTunnelError(
                f"{endpoint} names Pod {pod.namespace}/{pod.pod}, which is reached through a "
                "port-forward via its workload cluster's API server, and none is at hand "
                "(is the cluster's kubeconfig Secret there and usable?)",
                reason="no_route",
                endpoint=endpoint,
            )


DIRECT = DirectDialer()
"""Dials node addresses: ``--etcd-access=direct``, and any endpoint that names a host."""
