"""Workload etcd access over mutual TLS built from in-memory PEM bytes.

Two transports carry the same calls: etcd's JSON gateway over HTTP/1.1 (what
the controller uses: no threads of its own) and gRPC. Both dial through a
``Dialer``: ``DIRECT`` to ``host:port``, or ``PortForwardDialer`` to a Pod's
``namespace/pod:port`` through a port-forward via the workload API server, its
tunnels all served by one ``TunnelLoop`` thread.

Open clients with ``EtcdClient.open(endpoint, EtcdTLS(...), pool=...)``; ask a
whole cluster with ``cluster_status``. The server's certificate is always
verified against the cluster's etcd CA; no key or certificate is written to
disk; channels are bounded and reused by ``ChannelPool``. Failures are the typed
errors below, never gRPC tracebacks. Imports nothing of kcp but ``kcp.certs``.
"""

from kcp.etcd.client import EtcdClient
from kcp.etcd.cluster import EtcdClusterStatus, MemberHealth, cluster_status, move_leader
from kcp.etcd.connection import (
    DEFAULT_TRANSPORT,
    TRANSPORTS,
    Connection,
    EtcdConnection,
    EtcdTLS,
    Transport,
    normalize_endpoint,
)
from kcp.etcd.dial import (
    DEFAULT_ETCD_ACCESS,
    DIRECT,
    ETCD_ACCESS_MODES,
    Dialed,
    Dialer,
    DirectDialer,
    EtcdAccessMode,
    LocalTarget,
    PodEndpoint,
    pod_endpoint,
)
from kcp.etcd.errors import (
    EtcdCallTimeout,
    EtcdError,
    EtcdMemberNotFound,
    EtcdNotLeader,
    EtcdTLSError,
    EtcdTunnelError,
    EtcdUnavailable,
)
from kcp.etcd.gateway import GatewayConnection
from kcp.etcd.ioloop import DEFAULT_KEEPALIVE, TunnelLoop, TunnelObserver, TunnelStats
from kcp.etcd.model import Alarm, Member, MemberStatus
from kcp.etcd.pool import DEFAULT_MAX_CHANNELS, ChannelKey, ChannelPool, PoolStats
from kcp.etcd.portforward import PortForwardDialer
from kcp.etcd.timeouts import DEFAULT_CALL_TIMEOUT, DEFAULT_DIAL_TIMEOUT, EtcdTimeouts

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_DIAL_TIMEOUT",
    "DEFAULT_ETCD_ACCESS",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_TRANSPORT",
    "DIRECT",
    "ETCD_ACCESS_MODES",
    "TRANSPORTS",
    "Alarm",
    "ChannelKey",
    "ChannelPool",
    "Connection",
    "Dialed",
    "Dialer",
    "DirectDialer",
    "EtcdAccessMode",
    "EtcdCallTimeout",
    "EtcdClient",
    "EtcdClusterStatus",
    "EtcdConnection",
    "EtcdError",
    "EtcdMemberNotFound",
    "EtcdNotLeader",
    "EtcdTLS",
    "EtcdTLSError",
    "EtcdTimeouts",
    "EtcdTunnelError",
    "EtcdUnavailable",
    "GatewayConnection",
    "LocalTarget",
    "Member",
    "MemberHealth",
    "MemberStatus",
    "PodEndpoint",
    "PoolStats",
    "PortForwardDialer",
    "Transport",
    "TunnelLoop",
    "TunnelObserver",
    "TunnelStats",
    "cluster_status",
    "move_leader",
    "normalize_endpoint",
    "pod_endpoint",
]
