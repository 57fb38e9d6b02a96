"""What ``Tracker.etcd_access`` hands the reconciler: a cluster's etcd, ready to call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kcp.etcd import (
    DIRECT,
    ChannelPool,
    Dialer,
    EtcdClient,
    EtcdClusterStatus,
    EtcdTimeouts,
    EtcdTLS,
    cluster_status,
    normalize_endpoint,
)
from kcp.tracker.identity import ClusterKey

__all__ = ["EtcdAccess"]


@dataclass(frozen=True, eq=False)
class EtcdAccess:
    """Mutual-TLS access to one cluster's etcd with a valid, cached client certificate.

    Clients come from the tracker's bounded channel pool; opening one does no
    network I/O, the first call dials (bounded by the dial timeout): through a
    port-forward via the workload API server for a Pod endpoint
    (``kube-system/etcd-<node>:2379``), directly otherwise. Take a fresh
    ``EtcdAccess`` per reconcile: the certificate inside is renewed by the tracker.
    The repr shows no key material.
    """

    cluster: ClusterKey
    endpoints: tuple[str, ...]
    tls: EtcdTLS = field(repr=False)
    certificate_fingerprint: str
    certificate_not_after: datetime
    timeouts: EtcdTimeouts
    pool: ChannelPool = field(repr=False)
    dialer: Dialer = field(repr=False, default=DIRECT)
    _used: set[str] = field(repr=False, default_factory=set)
    _used_lock: threading.Lock = field(repr=False, default_factory=threading.Lock)
    _answered: Callable[[], None] = field(repr=False, default=lambda: None)
    """Tells the tracker etcd answered with a leader: that stands in for its next probe."""

    def client(self, endpoint: str) -> EtcdClient:
        """A client for one member (``host:port`` or ``https://host:port``)."""
        target = normalize_endpoint(endpoint)
        with self._used_lock:
            self._used.add(target)
        return EtcdClient.open(
            target, self.tls, timeouts=self.timeouts, pool=self.pool, dialer=self.dialer
        )

    def clients(self) -> list[EtcdClient]:
        """One client per known endpoint."""
        return [self.client(endpoint) for endpoint in self.endpoints]

    def cluster_status(self) -> EtcdClusterStatus:
        """Every member's view (leader, health, alarms), asked one after another."""
        status = cluster_status(self.clients())
        if status.leader_id is not None:
            self._answered()
        return status
