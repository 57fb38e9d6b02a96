"""A ``kubernetes`` client for one workload cluster whose key never touches a disk.

The ``kubernetes`` client (and urllib3 under it) only takes TLS material as
file paths. Instead of writing the kubeconfig's key to a file, the client's
urllib3 pool manager is replaced by one built from an ``ssl.SSLContext`` made
in memory by ``kcp.certs.client_tls_context`` (the key goes through an anonymous
memory file, never a file on disk, and afterwards lives only in the context).

Every request gets a timeout: the ``kubernetes`` client passes ``timeout=None``
("wait forever") unless a call gives ``_request_timeout``, so the pool manager
substitutes the tracker's default for ``None``.

The same credentials open port-forward tunnels to the cluster's Pods
(``dialer``): closing the client closes them.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

import urllib3

from kcp.certs import Kubeconfig, client_tls_context
from kcp.etcd import DIRECT, Dialer, PodEndpoint, PortForwardDialer, TunnelLoop
from kcp.tracker.readyz import ProbeConnection
from kcp.tracker.recent import ClientReads, RecentReads

__all__ = ["STATIC_POD_PREFIXES", "WorkloadClient", "node_of_static_pod", "ssl_context_for"]

STATIC_POD_PREFIXES = ("etcd-", "kube-apiserver-")
"""kubeadm names a node's static Pods ``<component>-<node>``; those kcp tunnels to."""


def node_of_static_pod(pod: PodEndpoint) -> str | None:
    """The node a kubeadm static Pod runs on: the name its serving certificate carries
    (and, for etcd, the member's name)."""
    for prefix in STATIC_POD_PREFIXES:
        if pod.pod.startswith(prefix) and len(pod.pod) > len(prefix):
            return pod.pod[len(prefix) :]
    return None


_MAX_CONNECTIONS = 4
"""urllib3 connections kept per workload API server."""


def ssl_context_for(kubeconfig: Kubeconfig) -> ssl.SSLContext:
    """A verifying TLS context (server checked against the kubeconfig's CA, hostname
    checked) presenting the kubeconfig's client certificate, if it has one."""
    return client_tls_context(
        kubeconfig.ca_pem, kubeconfig.client_cert_pem, kubeconfig.client_key_pem
    )


class _TimeoutPoolManager(urllib3.PoolManager):
    """A pool manager that gives every request without a timeout the default one."""

    def __init__(self, *, default_timeout: urllib3.Timeout, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_timeout = default_timeout

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        if kw.get("timeout") is None:
            kw["timeout"] = self.default_timeout
        return super().urlopen(method, url, redirect=redirect, **kw)


class WorkloadClient:
    """The workload cluster's API, for the reconciler (``api_client``) and for probes.

    ``api_client`` is a ``kubernetes.client.ApiClient``; its requests time out after
    the tracker's ``api_timeout`` unless a call passes ``_request_timeout``. After
    ``close()`` (the cluster was evicted, went down, or its kubeconfig changed) its
    connections are gone; ask the tracker for the current client.
    """

    def __init__(
        self,
        kubeconfig: Kubeconfig,
        *,
        digest: str,
        timeout: float,
        tunnels: TunnelLoop | None = None,
        source: str = "the workload cluster's kubeconfig",
        on_answer: Callable[[], None] | None = None,
        recent: RecentReads | None = None,
    ) -> None:
        from kubernetes import client

        self._on_answer = on_answer

        self.server = kubeconfig.server.rstrip("/")
        self.digest = digest
        """Digest of the kubeconfig Secret it was built from (rebuilt when it changes)."""
        configuration = client.Configuration()
        configuration.host = self.server
        self._auth_headers: dict[str, str] = {}
        if kubeconfig.token:
            configuration.api_key = {"authorization": kubeconfig.token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
            self._auth_headers["Authorization"] = f"Bearer {kubeconfig.token}"
        self.api_client: Any = client.ApiClient(configuration)
        context = ssl_context_for(kubeconfig)
        rest = self.api_client.rest_client
        rest.pool_manager.clear()
        rest.pool_manager = _TimeoutPoolManager(
            default_timeout=urllib3.Timeout(connect=timeout, read=timeout),
            num_pools=2,
            maxsize=_MAX_CONNECTIONS,
            ssl_context=context,
            retries=False,
        )
        self._probe = (
            ProbeConnection(self.server, context, self._auth_headers)
            if self.server.startswith("https://")
            else None
        )
        self._forwards: PortForwardDialer | None = None
        if tunnels is not None and self.server.startswith("https://"):
            self._forwards = PortForwardDialer(
                tunnels,
                server=self.server,
                context=context,
                headers=self._auth_headers,
                credentials=source,
                server_names=node_of_static_pod,
                identity=digest[:16],
            )
        self._closed = threading.Event()
        self.recent = ClientReads(recent)
        """Answers of reads the reconciles of this cluster share for a few seconds (kept in
        the tracker's one store `recent`, else in one of its own)."""

    def __repr__(self) -> str:
        return f"WorkloadClient({self.server!r}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def answered(self) -> None:
        """The caller read from this API server just now (a quorum read, which needs its
        etcd as `/readyz` does): it counts as this interval's API server probe."""
        if self._on_answer is not None and not self.closed:
            self._on_answer()

    @property
    def dialer(self) -> Dialer:
        """Reaches ``namespace/pod:port`` endpoints through a port-forward via this API server
        (with these credentials), others directly."""
        return self._forwards if self._forwards is not None else DIRECT

    def get(self, path: str, *, timeout: float) -> urllib3.BaseHTTPResponse:
        """``GET path`` with a hard timeout, body read; raises urllib3's errors."""
        pool: urllib3.PoolManager = self.api_client.rest_client.pool_manager
        return pool.request(
            "GET",
            f"{self.server}{path}",
            headers={"Accept": "application/json, */*", **self._auth_headers},
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            preload_content=True,
        )

    def probe(self, path: str, *, timeout: float) -> tuple[int, bytes]:
        """``GET path`` for a health probe: the status and the start of the body, within
        ``timeout``, on a connection of its own kept between probes (``ProbeConnection``);
        raises ``OSError``s, or urllib3's errors for a plain-HTTP server."""
        if self._probe is None:
            response = self.get(path, timeout=timeout)
            return response.status, response.data[:200]
        return self._probe.get(path, timeout)

    def close(self) -> None:
        """Drop every connection; the client must not be used afterwards."""
        if not self._closed.is_set():
            self._closed.set()
            if self._probe is not None:
                self._probe.close()
            self.recent.clear()
            self.api_client.rest_client.pool_manager.clear()
            if self._forwards is not None:
                self._forwards.close()
