"""The public face of kcp.etcd: what callers may rely on."""

from __future__ import annotations

import kcp.etcd


def test_exported_names() -> None:
    assert set(kcp.etcd.__all__) == {
        "DEFAULT_CALL_TIMEOUT",
        "DEFAULT_DIAL_TIMEOUT",
        "DEFAULT_MAX_CHANNELS",
        "DEFAULT_TRANSPORT",
        "TRANSPORTS",
        "Alarm",
        "ChannelKey",
        "ChannelPool",
        "Connection",
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
        "EtcdUnavailable",
        "GatewayConnection",
        "Member",
        "MemberHealth",
        "MemberStatus",
        "PoolStats",
        "Transport",
        "cluster_status",
        "move_leader",
        "normalize_endpoint",
        "DEFAULT_ETCD_ACCESS",
        "DEFAULT_KEEPALIVE",
        "DIRECT",
        "ETCD_ACCESS_MODES",
        "Dialed",
        "Dialer",
        "DirectDialer",
        "EtcdAccessMode",
        "EtcdTunnelError",
        "LocalTarget",
        "PodEndpoint",
        "PortForwardDialer",
        "TunnelLoop",
        "TunnelObserver",
        "TunnelStats",
        "pod_endpoint",
    }
    for name in kcp.etcd.__all__:
        assert getattr(kcp.etcd, name) is not None
