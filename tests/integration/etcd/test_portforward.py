"""A real 3-member etcd reached only through port-forward tunnels, over both transports.

The workload API server and the kubelets are a stand-in built on the `websockets`
library (tests/unit/etcd/portforward_servers.py) that forwards the Pods
`kube-system/etcd-m-N` port 2379 to the members; everything on kcp's side is the
product's: the tunnel loop, the dial seam, mutual TLS inside the tunnel verified
against the etcd CA and the member's name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kcp import certs
from kcp.certs import KeyPair, client_tls_context, new_certificate_authority
from kcp.etcd import (
    TRANSPORTS,
    ChannelPool,
    EtcdClient,
    EtcdTimeouts,
    EtcdTLS,
    EtcdTLSError,
    EtcdTunnelError,
    PodEndpoint,
    PortForwardDialer,
    Transport,
    TunnelLoop,
    cluster_status,
    move_leader,
)
from kcp.testing.etcd_cluster import EtcdCluster
from tests.unit.etcd.portforward_servers import ForwardingServer

pytestmark = pytest.mark.integration


def _pod(name: str) -> str:
    return f"kube-system/etcd-{name}:2379"


@pytest.fixture(scope="module")
def trio() -> Iterator[EtcdCluster]:
    with EtcdCluster(
        new_certificate_authority("etcd-ca", algorithm="ecdsa-p256"), members=3, name="m"
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def api_ca() -> KeyPair:
    return certs.new_certificate_authority("workload-apiserver", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def api(trio: EtcdCluster, api_ca: KeyPair) -> Iterator[ForwardingServer]:
    forwards = {
        ("kube-system", f"etcd-{m.name}", 2379): m.client_url.removeprefix("https://")
        for m in trio.members
    }
    with ForwardingServer(api_ca, forwards=forwards) as server:
        yield server


@pytest.fixture
def loop() -> Iterator[TunnelLoop]:
    loop = TunnelLoop()
    yield loop
    loop.close()


@pytest.fixture
def dialer(loop: TunnelLoop, api: ForwardingServer, api_ca: KeyPair) -> PortForwardDialer:
    return PortForwardDialer(
        loop,
        server=api.url,
        context=client_tls_context(api_ca.cert_pem),
        credentials="Secret ns/c1-kubeconfig",
        server_names=lambda pod: pod.pod.removeprefix("etcd-"),
    )


@pytest.fixture
def tls(trio: EtcdCluster) -> EtcdTLS:
    pair = trio.issue_client_certificate()
    return EtcdTLS(trio.ca_pem, pair.cert_pem, pair.key_pem)


@pytest.fixture(params=TRANSPORTS)
def pool(request: pytest.FixtureRequest) -> Iterator[ChannelPool]:
    transport: Transport = request.param
    pool = ChannelPool(timeouts=EtcdTimeouts(dial=5, call=5), transport=transport)
    yield pool
    pool.close_all()


def test_the_cluster_through_tunnels_only(
    trio: EtcdCluster,
    tls: EtcdTLS,
    pool: ChannelPool,
    dialer: PortForwardDialer,
    loop: TunnelLoop,
) -> None:
    clients = [EtcdClient.open(_pod(m.name), tls, pool=pool, dialer=dialer) for m in trio.members]
    for _ in range(5):
        status = cluster_status(clients)
        assert status.healthy, status
    assert sorted(h.name for h in status.health) == ["m-0", "m-1", "m-2"]
    assert {h.endpoint for h in status.health} == {_pod(m.name) for m in trio.members}
    # Kept and reused: one tunnel per member (gRPC may open one more while settling).
    assert loop.stats().opened <= 2 * len(trio.members)
    assert loop.stats().failed == {}


def test_leadership_moves_through_tunnels(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool, dialer: PortForwardDialer
) -> None:
    clients = [EtcdClient.open(_pod(m.name), tls, pool=pool, dialer=dialer) for m in trio.members]
    leader = next(c for c in clients if c.status().is_leader)
    target = next(c for c in clients if c is not leader).status().member_id
    assert move_leader(clients, target) == leader.status().member_id
    trio.wait_healthy()


def test_the_member_name_is_verified_inside_the_tunnel(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool, loop: TunnelLoop, api: ForwardingServer
) -> None:
    """The Pod etcd-m-0 answering with m-0's certificate is checked against the name m-1."""
    lying = PortForwardDialer(
        loop,
        server=api.url,
        context=client_tls_context(api.ca.cert_pem),
        server_names=lambda _pod: "m-1",
    )
    client = EtcdClient.open(_pod("m-0"), tls, pool=pool, dialer=lying)
    with pytest.raises(EtcdTLSError):
        client.status()


def test_a_killed_member_is_named_with_its_pod(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool, dialer: PortForwardDialer
) -> None:
    trio.kill_member(2)
    try:
        clients = [
            EtcdClient.open(_pod(m.name), tls, pool=pool, dialer=dialer) for m in trio.members
        ]
        status = cluster_status(clients)
        down = status.member("m-2")
        assert down is not None and not down.reachable
        assert down.endpoint == _pod("m-2")
        assert "Pod kube-system/etcd-m-2" in down.errors[0]
        assert "could not reach port 2379 inside the Pod" in down.errors[0]
        with pytest.raises(EtcdTunnelError):
            clients[2].status()
        assert PodEndpoint.parse(_pod("m-2")) is not None
    finally:
        trio.start_member(2)
        trio.wait_healthy()
