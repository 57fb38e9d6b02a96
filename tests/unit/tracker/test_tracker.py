"""The tracker facade without a real etcd: states, errors, eviction, handlers, metrics.

Connected clusters (real etcd and API server) are covered in tests/integration/tracker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.tracker import (
    ClusterKey,
    ClusterSecretError,
    InMemorySecrets,
    NotConnected,
    SecretData,
    Tracker,
    TrackerOptions,
)
from tests.unit.tracker.servers import https_server

KEY = ClusterKey("ns", "c1", "uid-1")


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def refused_endpoint() -> str:
    """An address nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture(scope="module")
def etcd_ca() -> certs.KeyPair:
    return certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def api_ca() -> certs.KeyPair:
    return certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")


def kubeconfig_bytes(ca: certs.KeyPair, server: str) -> bytes:
    admin = certs.issue_certificate(
        ca,
        common_name="kubernetes-admin",
        organizations=("system:masters",),
        algorithm="ecdsa-p256",
    )
    return certs.build_kubeconfig(
        cluster_name="c1",
        server=server,
        ca_pem=ca.cert_pem,
        client_cert_pem=admin.cert_pem,
        client_key_pem=admin.key_pem,
    )


@pytest.fixture
def secrets(etcd_ca: certs.KeyPair) -> InMemorySecrets:
    store = InMemorySecrets()
    store.put("ns", "c1-etcd", certs.key_pair_to_secret_data(etcd_ca))
    return store


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_tracker(
    secrets: InMemorySecrets, registry: CollectorRegistry
) -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def make(**options: object) -> Tracker:
        defaults: dict[str, object] = {
            "key_algorithm": "ecdsa-p256",
            "probe_interval": 0.05,
            "probe_timeout": 0.5,
            "connecting_retry_after": 0.05,
        }
        defaults.update(options)
        tracker = Tracker(secrets, TrackerOptions(**defaults), registry=registry)  # type: ignore[arg-type]
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close()


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels or None)


def test_a_new_cluster_is_not_connected_yet_and_the_answer_is_immediate(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker()
    started = time.perf_counter()
    with pytest.raises(NotConnected) as caught:
        tracker.etcd_access(KEY, [refused_endpoint()])
    assert time.perf_counter() - started < 0.05
    assert caught.value.reason == "connecting"
    assert caught.value.retry_after > 0


def test_lookups_return_at_once_while_the_secret_read_hangs(
    registry: CollectorRegistry,
) -> None:
    release = threading.Event()

    class HangingSecrets:
        def read(self, namespace: str, name: str, *, timeout: float) -> SecretData | None:
            release.wait(10)
            return None

    tracker = Tracker(HangingSecrets(), TrackerOptions(probe_workers=1), registry=registry)
    try:
        started = time.perf_counter()
        for _ in range(100):
            with pytest.raises(NotConnected):
                tracker.etcd_access(KEY, ["127.0.0.1:2379"])
            with pytest.raises(NotConnected):
                tracker.workload_client(KEY)
        # A lookup that waited for the read would take its 10 s; a GC pause or a busy
        # machine must not fail this, so the bound is far from both.
        assert time.perf_counter() - started < 5.0
    finally:
        release.set()
        tracker.close()


def test_a_missing_etcd_secret_is_a_secret_error_naming_it(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets
) -> None:
    secrets.delete("ns", "c1-etcd")
    tracker = make_tracker()
    tracker.track(KEY)
    wait_for(lambda: "not found" in (tracker.health(KEY) or _nothing).last_error)
    with pytest.raises(ClusterSecretError, match=r"Secret ns/c1-etcd not found"):
        tracker.etcd_access(KEY, ["127.0.0.1:2379"])


def test_a_garbage_etcd_secret_is_a_secret_error_without_key_material(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets, etcd_ca: certs.KeyPair
) -> None:
    other_key = certs.encode_private_key(certs.generate_private_key("ecdsa-p256"))
    secrets.put("ns", "c1-etcd", {"tls.crt": etcd_ca.cert_pem, "tls.key": other_key})
    tracker = make_tracker()
    tracker.track(KEY)

    def secret_error() -> ClusterSecretError | None:
        try:
            tracker.etcd_access(KEY, ["127.0.0.1:2379"])
        except ClusterSecretError as exc:
            return exc
        except NotConnected:
            return None
        return None

    wait_for(secret_error)
    message = str(secret_error())
    assert "ns/c1-etcd" in message
    assert "does not belong" in message
    assert "PRIVATE KEY" not in message
    assert other_key.decode().splitlines()[1] not in message


def test_a_missing_kubeconfig_secret_is_a_secret_error_for_the_workload_client(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker()
    tracker.track(KEY)
    wait_for(lambda: "kubeconfig" in (tracker.health(KEY) or _nothing).last_error)
    with pytest.raises(ClusterSecretError, match="ns/c1-kubeconfig not found"):
        tracker.workload_client(KEY)


def test_five_failed_checks_mark_a_connected_cluster_down_and_the_key_is_kept(
    make_tracker: Callable[..., Tracker],
    registry: CollectorRegistry,
    secrets: InMemorySecrets,
    api_ca: certs.KeyPair,
) -> None:
    tracker = make_tracker()
    with https_server(api_ca) as url:
        secrets.put("ns", "c1-kubeconfig", {"value": kubeconfig_bytes(api_ca, url)})
        tracker.track(KEY)
        wait_for(lambda: (tracker.health(KEY) or _nothing).state == "connected")
        tracker.workload_client(KEY)
    # The API server is gone: connections are refused from now on.
    wait_for(lambda: (tracker.health(KEY) or _nothing).state == "down")
    health = tracker.health(KEY)
    assert health is not None
    assert not health.connected
    assert health.api_server_ok is False
    assert health.consecutive_failures == 5
    assert health.last_probe_time is not None
    assert any(
        words in health.last_error for words in ("unreachable", "refused", "did not answer")
    ), health.last_error
    with pytest.raises(NotConnected) as caught:
        tracker.workload_client(KEY)
    assert caught.value.reason == "down"
    assert "failed health check" in str(caught.value)
    assert tracker.stats().keys_generated == 1
    assert tracker._keys.peek(KEY) is not None
    assert sample(registry, "kcp_tracker_connection_up", namespace="ns", name="c1") == 0
    failed = sum(
        sample(registry, "kcp_tracker_health_checks_total", target="api_server", result=result) or 0
        for result in ("failure", "timeout")
    )
    assert failed >= 5


def test_health_listeners_hear_of_connecting_and_going_down_not_of_each_probe(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets, api_ca: certs.KeyPair
) -> None:
    tracker = make_tracker()
    heard: list[tuple[ClusterKey, str]] = []
    tracker.on_health_change(
        lambda key: heard.append((key, (tracker.health(key) or _nothing).state))
    )
    with https_server(api_ca) as url:
        secrets.put("ns", "c1-kubeconfig", {"value": kubeconfig_bytes(api_ca, url)})
        tracker.track(KEY)
        wait_for(lambda: (tracker.health(KEY) or _nothing).state == "connected")
        time.sleep(0.3)  # several more successful probes (every 0.05 s)
        assert heard == [(KEY, "connected")]
    wait_for(lambda: (tracker.health(KEY) or _nothing).state == "down")
    # The API server stopped answering (still connected), then the cluster went down.
    assert heard == [(KEY, "connected"), (KEY, "connected"), (KEY, "down")]


def test_failures_before_the_first_connection_keep_the_cluster_connecting(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets, api_ca: certs.KeyPair
) -> None:
    # First boot: the control-plane endpoint refuses connections until its server is up.
    endpoint = refused_endpoint()
    port = int(endpoint.rsplit(":", 1)[1])
    secrets.put("ns", "c1-kubeconfig", {"value": kubeconfig_bytes(api_ca, f"https://{endpoint}")})
    tracker = make_tracker(connecting_backoff=0.01, connecting_backoff_max=0.05)
    tracker.track(KEY)
    wait_for(lambda: (tracker.health(KEY) or _nothing).consecutive_failures >= 10)
    health = tracker.health(KEY)
    assert health is not None and health.state == "connecting" and not health.connected
    with pytest.raises(NotConnected) as caught:
        tracker.workload_client(KEY)
    assert caught.value.reason == "connecting"
    assert caught.value.retry_after == 0.05
    assert f"workload API server https://{endpoint}" in str(caught.value)  # the last problem

    with https_server(api_ca, port=port):
        wait_for(lambda: (tracker.health(KEY) or _nothing).state == "connected")
        assert tracker.workload_client(KEY) is not None
        health = tracker.health(KEY)
        assert health is not None and health.consecutive_failures == 0
    # Connected once: from now on five failures in a row mean down.
    wait_for(lambda: (tracker.health(KEY) or _nothing).state == "down")
    assert (tracker.health(KEY) or _nothing).consecutive_failures == 5


def test_a_cluster_that_never_connected_is_checked_with_backoff(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker()  # probes every 0.05 s, lookups may ask every 0.05 s
    endpoint = refused_endpoint()
    tracker.track(KEY, etcd_endpoints=[endpoint])
    wait_for(lambda: (tracker.health(KEY) or _nothing).consecutive_failures >= 1)
    first = tracker.health(KEY)
    assert first is not None and first.last_probe_time is not None
    retry_afters = []
    while (tracker.health(KEY) or _nothing).consecutive_failures <= first.consecutive_failures:
        # A reconciler asking again and again does not bring the next check forward.
        with pytest.raises(NotConnected) as caught:
            tracker.etcd_access(KEY, [endpoint])
        assert caught.value.reason == "connecting"
        retry_afters.append(caught.value.retry_after)
        time.sleep(0.02)
        assert len(retry_afters) < 1000, "no further check within 20 s"
    second = tracker.health(KEY)
    assert second is not None and second.last_probe_time is not None
    assert second.state == "connecting"
    gap = (second.last_probe_time - first.last_probe_time).total_seconds()
    assert gap >= 1.9, gap  # connecting_backoff: 2 s after the first failure, then more
    assert set(retry_afters) == {0.05}  # while the reconciler still comes back soon


def test_a_401_disconnects_a_cluster_that_never_connected_at_once(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets, api_ca: certs.KeyPair
) -> None:
    tracker = make_tracker(probe_interval=5.0)
    with https_server(api_ca, status=401) as url:
        secrets.put("ns", "c1-kubeconfig", {"value": kubeconfig_bytes(api_ca, url)})
        tracker.track(KEY)
        wait_for(lambda: (tracker.health(KEY) or _nothing).state == "down")
    health = tracker.health(KEY)
    assert health is not None
    assert health.consecutive_failures == 1
    assert "401" in health.last_error
    with pytest.raises(NotConnected) as caught:
        tracker.workload_client(KEY)
    assert caught.value.reason == "down"


def test_evict_drops_key_certificates_probes_and_metric_series(
    make_tracker: Callable[..., Tracker], registry: CollectorRegistry, secrets: InMemorySecrets
) -> None:
    tracker = make_tracker()
    tracker.track(KEY, etcd_endpoints=[refused_endpoint()])
    wait_for(lambda: tracker._keys.peek(KEY) is not None and len(tracker._certificates) == 1)
    assert sample(registry, "kcp_tracker_clusters") == 1
    started = time.monotonic()
    assert tracker.evict(KEY) is True
    assert time.monotonic() - started < 1.0
    assert tracker.health(KEY) is None
    assert tracker._keys.peek(KEY) is None
    assert len(tracker._certificates) == 0
    assert sample(registry, "kcp_tracker_clusters") == 0
    assert sample(registry, "kcp_tracker_connection_up", namespace="ns", name="c1") is None
    reads = secrets.reads
    time.sleep(0.3)
    assert secrets.reads == reads  # no more checks
    assert tracker.evict(KEY) is False


def test_an_evicted_cluster_is_not_tracked_again_by_a_late_lookup(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker()
    tracker.track(KEY)
    wait_for(lambda: tracker._keys.peek(KEY) is not None)
    tracker.evict(KEY)
    for lookup in (
        lambda: tracker.etcd_access(KEY, ["127.0.0.1:2379"]),
        lambda: tracker.workload_client(KEY),
    ):
        with pytest.raises(NotConnected) as caught:
            lookup()
        assert caught.value.reason == "evicted"
    time.sleep(0.2)
    assert tracker.clusters() == []
    assert tracker.stats().keys_generated == 1  # no key made for a deleted cluster


def test_refresh_rereads_the_secrets_now(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets
) -> None:
    tracker = make_tracker(probe_interval=None, secret_refresh_interval=3600.0)
    tracker.track(KEY)
    wait_for(lambda: secrets.reads >= 2)
    time.sleep(0.1)
    reads = secrets.reads
    tracker.refresh(KEY)
    wait_for(lambda: secrets.reads >= reads + 2)


def test_the_cluster_handler_evicts_deleted_and_recreated_clusters(
    make_tracker: Callable[..., Tracker],
) -> None:
    tracker = make_tracker()
    handler = tracker.cluster_event_handler()
    obj = {"metadata": {"namespace": "ns", "name": "c1", "uid": "uid-1"}}
    tracker.track(KEY)
    handler("MODIFIED", obj, obj)
    assert tracker.clusters() == [KEY]
    recreated = {"metadata": {"namespace": "ns", "name": "c1", "uid": "uid-2"}}
    handler("ADDED", recreated, None)
    assert tracker.clusters() == []
    new_key = ClusterKey.from_object(recreated)
    tracker.track(new_key)
    handler("DELETED", recreated, None)
    assert tracker.clusters() == []
    handler("DELETED", {"metadata": {}}, None)  # malformed: ignored


def test_tracking_a_new_uid_under_the_same_name_evicts_the_old_one(
    make_tracker: Callable[..., Tracker], registry: CollectorRegistry
) -> None:
    tracker = make_tracker()
    tracker.track(KEY)
    wait_for(lambda: tracker._keys.peek(KEY) is not None)
    old_key = tracker._keys.peek(KEY)
    new = ClusterKey("ns", "c1", "uid-2")
    tracker.track(new)
    assert tracker.clusters() == [new]
    assert tracker._keys.peek(KEY) is None
    wait_for(lambda: tracker._keys.peek(new) is not None)
    assert tracker._keys.peek(new) is not old_key
    assert sample(registry, "kcp_tracker_connection_up", namespace="ns", name="c1") == 0
    assert sample(registry, "kcp_tracker_clusters") == 1


def test_a_changed_secret_event_triggers_a_reread(
    make_tracker: Callable[..., Tracker], secrets: InMemorySecrets, etcd_ca: certs.KeyPair
) -> None:
    tracker = make_tracker(probe_interval=None, secret_refresh_interval=3600.0)
    tracker.track(KEY)
    wait_for(lambda: secrets.reads >= 2)
    time.sleep(0.1)
    reads = secrets.reads
    handler = tracker.secret_event_handler()
    version = secrets.put("ns", "c1-etcd", certs.key_pair_to_secret_data(etcd_ca))
    stale = {"metadata": {"namespace": "ns", "name": "c1-etcd", "resourceVersion": "1"}}
    handler("MODIFIED", stale, None)  # the version already read: nothing to do
    time.sleep(0.2)
    assert secrets.reads == reads
    fresh = {"metadata": {"namespace": "ns", "name": "c1-etcd", "resourceVersion": version}}
    handler("MODIFIED", fresh, None)
    wait_for(lambda: secrets.reads > reads)
    handler("MODIFIED", {"metadata": {"namespace": "ns", "name": "unrelated"}}, None)


def test_metric_families_are_registered(
    make_tracker: Callable[..., Tracker], registry: CollectorRegistry
) -> None:
    make_tracker()
    names = {metric.name for metric in registry.collect()}
    assert {
        "kcp_tracker_clusters",
        "kcp_tracker_keys_generated",
        "kcp_tracker_certificates_issued",
        "kcp_tracker_cache_hits",
        "kcp_tracker_cache_misses",
        "kcp_tracker_cache_evictions",
        "kcp_tracker_cache_expirations",
        "kcp_tracker_health_checks",
        "kcp_tracker_connection_up",
    } <= names


def test_a_closed_tracker_refuses_new_clusters(make_tracker: Callable[..., Tracker]) -> None:
    tracker = make_tracker()
    tracker.track(KEY)
    tracker.close()
    assert tracker.clusters() == []
    with pytest.raises(NotConnected, match="closed"):
        tracker.etcd_access(ClusterKey("ns", "c2", "u"), ["127.0.0.1:1"])


class _Nothing:
    last_error = ""
    state = ""
    consecutive_failures = 0


_nothing = _Nothing()


def test_two_trackers_can_share_one_registry(secrets: InMemorySecrets) -> None:
    registry = CollectorRegistry()
    first = Tracker(secrets, TrackerOptions(probe_interval=None), registry=registry)
    second = Tracker(secrets, TrackerOptions(probe_interval=None), registry=registry)
    try:
        first.track(KEY)
        second.track(ClusterKey("ns", "c2", "uid-2"))
        assert registry.get_sample_value("kcp_tracker_clusters") == 2
    finally:
        first.close()
        second.close()
    assert registry.get_sample_value("kcp_tracker_clusters") == 0
