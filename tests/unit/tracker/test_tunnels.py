"""The tracker's port-forward tunnels, without a real cluster: a fake workload API server
(`websockets`, answering /readyz and port-forwards) in front of a fake etcd gateway.

What a user would notice: a steady cluster keeps one tunnel per member however often
it is asked, a missing Pod is named in the cluster's health, eviction closes the
tunnels, and the `kcp_tracker_tunnels_*` metrics count it all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.tracker import ClusterKey, InMemorySecrets, NotConnected, Tracker, TrackerOptions
from tests.unit.etcd.portforward_servers import ForwardingServer
from tests.unit.tracker.servers import etcd_gateway_server
from tests.unit.tracker.test_tracker import kubeconfig_bytes, wait_for

KEY = ClusterKey("ns", "c1", "uid-tunnels")
MEMBER = "kube-system/etcd-n1:2379"


@pytest.fixture(scope="module")
def etcd_ca() -> certs.KeyPair:
    return certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def api_ca() -> certs.KeyPair:
    return certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")


@pytest.fixture
def workload(etcd_ca: certs.KeyPair, api_ca: certs.KeyPair) -> Iterator[ForwardingServer]:
    with (
        etcd_gateway_server(etcd_ca, "n1") as member,
        ForwardingServer(api_ca, forwards={("kube-system", "etcd-n1", 2379): member}) as api,
    ):
        yield api


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tracker(
    etcd_ca: certs.KeyPair,
    api_ca: certs.KeyPair,
    workload: ForwardingServer,
    registry: CollectorRegistry,
) -> Iterator[Tracker]:
    secrets = InMemorySecrets()
    secrets.put("ns", "c1-etcd", certs.key_pair_to_secret_data(etcd_ca))
    secrets.put("ns", "c1-kubeconfig", {"value": kubeconfig_bytes(api_ca, workload.url)})
    options = TrackerOptions(
        key_algorithm="ecdsa-p256",
        probe_interval=0.05,
        probe_timeout=2.0,
        connecting_retry_after=0.05,
    )
    tracker = Tracker(secrets, options, registry=registry)
    yield tracker
    tracker.close()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels or None) or 0.0


def connected(tracker: Tracker) -> Callable[[], bool]:
    def check() -> bool:
        health = tracker.health(KEY)
        return health is not None and health.connected

    return check


def test_a_steady_cluster_keeps_one_tunnel_per_member(
    tracker: Tracker, registry: CollectorRegistry
) -> None:
    tracker.track(KEY, etcd_endpoints=[MEMBER])
    wait_for(connected(tracker))
    for _ in range(20):  # reconciles (and the API server's probes, every 50 ms) meanwhile
        status = tracker.etcd_access(KEY, [MEMBER]).cluster_status()
        assert status.healthy, status
        time.sleep(0.02)
    assert sample(registry, "kcp_tracker_tunnels_opened_total") == 1
    assert sample(registry, "kcp_tracker_tunnels_open") == 1
    stats = tracker.stats()
    assert (stats.tunnels_opened, stats.tunnels_open, stats.tunnels_failed) == (1, 1, {})
    assert tracker.stats().health_checks.get("api_server/success", 0) > 3

    started = time.monotonic()
    tracker.evict(KEY)
    wait_for(lambda: sample(registry, "kcp_tracker_tunnels_open") == 0, timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert tracker.tunnel_stats().open == 0


def test_a_missing_pod_is_named_in_the_health_and_counted(
    tracker: Tracker, registry: CollectorRegistry
) -> None:
    tracker.track(KEY, etcd_endpoints=["kube-system/etcd-gone:2379"])
    wait_for(lambda: sample(registry, "kcp_tracker_tunnels_failed_total", reason="not_found") > 0)
    health = tracker.health(KEY)
    assert health is not None and not health.connected
    assert "Pod kube-system/etcd-gone" in health.last_error
    assert "kubeadm runs it as a static Pod" in health.last_error
    assert sample(registry, "kcp_tracker_tunnels_opened_total") == 0


def test_pod_endpoints_wait_for_the_workload_api_server(
    etcd_ca: certs.KeyPair, registry: CollectorRegistry
) -> None:
    """Without a kubeconfig there is no API server to port-forward through: a Secret error."""
    secrets = InMemorySecrets()
    secrets.put("ns", "c1-etcd", certs.key_pair_to_secret_data(etcd_ca))
    options = TrackerOptions(key_algorithm="ecdsa-p256", connecting_retry_after=0.05)
    with Tracker(secrets, options, registry=registry) as tracker:
        tracker.track(KEY, etcd_endpoints=[MEMBER])

        def refused() -> bool:
            try:
                tracker.etcd_access(KEY, [MEMBER])
            except NotConnected as exc:
                return exc.reason == "secret" and "c1-kubeconfig" in str(exc)
            return False

        wait_for(refused)
