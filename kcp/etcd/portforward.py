"""Reach a workload cluster's Pods through a port-forward via its API server, as Cluster API does.

``PortForwardDialer`` is the ``Dialer`` of one workload API server (its URL and
the TLS context and headers of its kubeconfig): an endpoint that names a Pod
(``kube-system/etcd-n1:2379``) is reached by
``GET /api/v1/namespaces/kube-system/pods/etcd-n1/portforward?ports=2379``
upgraded to a websocket (``v4.channel.k8s.io``), which the API server hands to
the Pod's kubelet; any other endpoint is dialled directly. The tunnels run on a
shared ``TunnelLoop``, so they cost no thread each.

When a tunnel cannot be opened or dies, the error names the Pod and what to
check: the Pod itself (404), the identity's RBAC in the workload cluster (403),
the kubeconfig's credentials (401), the kubelet and the port inside the Pod.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from kcp.etcd.dial import DIRECT, Dialed, LocalTarget, PodEndpoint
from kcp.etcd.errors import EtcdTunnelError
from kcp.etcd.ioloop import Listener, TunnelLoop, TunnelOpenFailed
from kcp.etcd.tunnel import ForwardTarget, Tunnel, TunnelFailure

__all__ = ["PortForwardDialer", "describe_failure"]

_RESOLVE_TTL = 30.0
"""Seconds the API server's addresses are reused before a caller resolves them again."""


def describe_failure(
    failure: TunnelFailure, pod: PodEndpoint, *, server: str, credentials: str
) -> str:
    """What went wrong with the port-forward to ``pod``, and what to check, in one sentence."""
    forward = f"port-forward to Pod {pod.namespace}/{pod.pod} port {pod.port} via {server}"
    detail = f" [{failure.detail}]" if failure.detail else ""
    status = f"HTTP {failure.status}: " if failure.status else ""
    reason = failure.reason
    if reason == "not_found":
        return (
            f"{forward} failed: the API server has no such Pod ({status}{failure.detail or ''}); "
            f"check that Pod {pod.namespace}/{pod.pod} exists: kubeadm runs it as a static Pod "
            "named after the Node, which the Machine's nodeRef names"
        )
    if reason == "forbidden":
        return (
            f"{forward} was refused ({status}{failure.detail or 'forbidden'}); check RBAC in "
            f"the workload cluster: the identity in {credentials} needs create and get on "
            f"pods/portforward in namespace {pod.namespace}"
        )
    if reason == "unauthorized":
        return (
            f"{forward} failed: the API server rejected the credentials in {credentials} "
            f"({status or 'HTTP 401'}){detail}"
        )
    if reason == "port":
        return (
            f"{forward} failed: the kubelet could not reach port {pod.port} inside the Pod"
            f"{detail}; check that Pod {pod.namespace}/{pod.pod} is running and listening "
            f"on {pod.port}"
        )
    if reason == "unreachable":
        return (
            f"{forward} failed: cannot connect to the API server{detail}; check the server "
            f"in {credentials} and that it is reachable from kcp"
        )
    if reason == "tls":
        return (
            f"{forward} failed: TLS with the API server failed{detail}; check the CA and "
            f"client certificate in {credentials}"
        )
    if reason == "timeout":
        return (
            f"{forward} did not open within the dial timeout ({failure.detail}); the API "
            "server or the kubelet of the Pod's Node is slow or unreachable"
        )
    if reason == "lost":
        return (
            f"{forward} broke{detail}; the API server, the kubelet or the Pod went away; "
            "the next call opens a new one"
        )
    if reason == "closed":
        return f"{forward} was closed{detail}"
    return (
        f"{forward} failed ({status or reason}){detail}; check that the kubelet of the Pod's "
        "Node is up and reachable from the API server"
    )


class _Forward:
    """A loopback address for gRPC whose connections are tunnelled to one Pod port."""

    def __init__(self, listener: Listener, describe: Callable[[TunnelFailure], str]) -> None:
        self._listener = listener
        self._describe = describe

    @property
    def address(self) -> str:
        return self._listener.address

    def last_failure(self) -> str | None:
        failure = self._listener.last
        return None if failure is None else self._describe(failure)

    def close(self) -> None:
        self._listener.close()


class PortForwardDialer:
    """The ``Dialer`` of one workload API server: Pod endpoints through a port-forward.

    ``server`` is the API server's URL, ``context`` verifies it and presents the
    kubeconfig's client certificate (built in memory), ``headers`` carry a bearer
    token if the kubeconfig has one. ``credentials`` names where these came from,
    for messages (e.g. ``Secret ns/c1-kubeconfig``). ``server_names`` maps a Pod to
    the name its serving certificate carries (kubeadm: the node's). ``identity``
    distinguishes the routes of two credentials to the same server (a digest).
    """

    def __init__(
        self,
        loop: TunnelLoop,
        *,
        server: str,
        context: ssl.SSLContext,
        headers: Mapping[str, str] | None = None,
        credentials: str = "the workload cluster's kubeconfig",
        server_names: Callable[[PodEndpoint], str | None] = lambda _pod: None,
        identity: str = "",
    ) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"the workload API server {server!r} is not an https:// URL")
        self._loop = loop
        self.server = server.rstrip("/")
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._prefix = parsed.path.rstrip("/")
        self._context = context
        self._headers = tuple(
            (name.lower().encode("ascii"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        )
        self.credentials = credentials
        self._server_names = server_names
        self.pod_route = f"port-forward:{self.server}:{identity}"
        """The ``route`` of every Pod endpoint this dialer reaches."""
        self._lock = threading.Lock()
        self._addresses: tuple[tuple[int, Any], ...] = ()
        self._resolved_at = -_RESOLVE_TTL
        self._closed = False

    def __repr__(self) -> str:
        return f"PortForwardDialer({self.server!r})"

    # -- Dialer ---------------------------------------------------------------------------

    def route(self, endpoint: str) -> str:
        return self.pod_route if PodEndpoint.parse(endpoint) else DIRECT.route(endpoint)

    def server_name(self, endpoint: str) -> str | None:
        pod = PodEndpoint.parse(endpoint)
        return None if pod is None else self._server_names(pod)

    def connect(self, endpoint: str, timeout: float) -> Dialed:
        pod = PodEndpoint.parse(endpoint)
        if pod is None:
            return DIRECT.connect(endpoint, timeout)
        deadline = time.monotonic() + timeout
        target = self._target(pod, endpoint, resolve=True)
        try:
            sock, tunnel = self._loop.open(
                target, timeout=max(deadline - time.monotonic(), 0.001), owner=self
            )
        except TunnelOpenFailed as exc:
            raise self._error(exc.failure, pod, endpoint) from None
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        return Dialed(sock, why_closed=lambda: self._why(tunnel, pod))

    def listen(self, endpoint: str, timeout: float) -> LocalTarget:
        pod = PodEndpoint.parse(endpoint)
        if pod is None:
            return DIRECT.listen(endpoint, timeout)
        self._target(pod, endpoint, resolve=True)  # resolve now, on the caller's thread
        listener = self._loop.listen(
            lambda: self._target(pod, endpoint, resolve=False), timeout=timeout, owner=self
        )
        return _Forward(listener, lambda failure: self.describe(failure, pod))

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close every tunnel and listener opened through this dialer (soon, not waiting)."""
        self._closed = True
        self._loop.close_owner(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def describe(self, failure: TunnelFailure, pod: PodEndpoint) -> str:
        return describe_failure(failure, pod, server=self.server, credentials=self.credentials)

    # -- internals ------------------------------------------------------------------------

    def _why(self, tunnel: Tunnel, pod: PodEndpoint) -> str | None:
        failure = tunnel.failure
        return None if failure is None else self.describe(failure, pod)

    def _error(self, failure: TunnelFailure, pod: PodEndpoint, endpoint: str) -> EtcdTunnelError:
        return EtcdTunnelError(
            self.describe(failure, pod), reason=failure.reason, endpoint=endpoint
        )

    def _target(self, pod: PodEndpoint, endpoint: str, *, resolve: bool) -> ForwardTarget:
        if self._closed:
            raise EtcdTunnelError(
                f"{endpoint}: the route through {self.server} was closed (the cluster was "
                "evicted, went down, or its kubeconfig changed); get a new client",
                reason="closed",
                endpoint=endpoint,
            )
        path = (
            f"{self._prefix}/api/v1/namespaces/{urllib.parse.quote(pod.namespace)}/pods/"
            f"{urllib.parse.quote(pod.pod)}/portforward?ports={pod.port}"
        )
        return ForwardTarget(
            host=self._host,
            port=self._port,
            addresses=self._resolve(pod, endpoint) if resolve else self._addresses,
            path=path,
            forwarded_port=pod.port,
            context=self._context,
            headers=self._headers,
        )

    def _resolve(self, pod: PodEndpoint, endpoint: str) -> tuple[tuple[int, Any], ...]:
        with self._lock:
            if self._addresses and time.monotonic() - self._resolved_at < _RESOLVE_TTL:
                return self._addresses
        try:
            found = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except OSError as exc:
            if self._addresses:
                return self._addresses  # keep the last good answer through a DNS hiccup
            failure = TunnelFailure("unreachable", f"cannot resolve {self._host}: {exc}")
            raise self._error(failure, pod, endpoint) from None
        addresses = tuple((family, sockaddr) for family, _, _, _, sockaddr in found)
        with self._lock:
            self._addresses, self._resolved_at = addresses, time.monotonic()
        return addresses
