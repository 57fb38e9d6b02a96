"""The tracker against a real 3-member TLS etcd and the real local API server.

Secrets live on the API server (read live by the tracker) except in the
many-clusters test, which holds them in memory to stay cheap. The only
stand-ins are two relays that forward to the real servers and then go silent
(accept TCP, never answer). The last test checks that no key the tracker
generated reached a file or a log line.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from kubernetes import client
from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.certs import KeyPair
from kcp.etcd import EtcdClient, EtcdTLSError
from kcp.rest import Resource
from kcp.runtime.informer import Informer
from kcp.testing.controlplane import LocalControlPlane
from kcp.testing.etcd_cluster import EtcdCluster
from kcp.tracker import (
    ClusterKey,
    EtcdAccess,
    InMemorySecrets,
    NotConnected,
    Tracker,
    TrackerOptions,
)

pytestmark = pytest.mark.integration

CLUSTERS = Resource("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
SECRETS = Resource("", "v1", "Secret", "secrets")
STARTED = time.time()

# Every private key the tracker handed out or holds, in every encoding, for the final scan.
GENERATED_KEYS: list[bytes] = []
LOG = io.StringIO()


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def remember_key(tracker: Tracker, key: ClusterKey, access: EtcdAccess | None = None) -> None:
    if access is not None:
        GENERATED_KEYS.append(access.tls.key_pem)
    cached = tracker._keys.peek(key)
    if cached is not None:
        private = cached.private_key
        GENERATED_KEYS.append(certs.encode_private_key(private))
        GENERATED_KEYS.append(
            private.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def access_when_connected(
    tracker: Tracker, key: ClusterKey, endpoints: list[str], timeout: float = 30.0
) -> EtcdAccess:
    def attempt() -> EtcdAccess | None:
        try:
            return tracker.etcd_access(key, endpoints)
        except NotConnected:
            return None

    access: EtcdAccess = wait_for(attempt, timeout, f"{key} to connect")
    remember_key(tracker, key, access)
    return access


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def captured_logs() -> Iterator[io.StringIO]:
    """Every structlog and stdlib log line of this module, rendered, into LOG."""
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
        logger_factory=structlog.PrintLoggerFactory(LOG),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(LOG)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield LOG
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        structlog.configure(**saved)


@pytest.fixture(scope="module")
def etcd_ca() -> KeyPair:
    return certs.new_certificate_authority("workload-etcd-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def etcd(etcd_ca: KeyPair) -> Iterator[EtcdCluster]:
    with EtcdCluster(etcd_ca, members=3, name="tracker") as cluster:
        yield cluster


def kubeconfig_for(
    control_plane: LocalControlPlane, *, server: str | None = None, user: str | None = None
) -> bytes:
    """An admin kubeconfig for the real API server (standing in for a workload cluster's)."""
    pki = control_plane.work_dir / "pki"
    return certs.build_kubeconfig(
        cluster_name="workload",
        server=server or control_plane.server_url,
        ca_pem=(pki / "ca.crt").read_bytes(),
        client_cert_pem=(pki / "admin.crt").read_bytes(),
        client_key_pem=(pki / "admin.key").read_bytes(),
        user_name=user,
    )


@pytest.fixture(scope="module")
def admin_kubeconfig(control_plane: LocalControlPlane) -> bytes:
    return kubeconfig_for(control_plane)


@pytest.fixture(scope="module")
def core(control_plane: LocalControlPlane) -> client.CoreV1Api:
    return client.CoreV1Api(control_plane.api_client())


@pytest.fixture
def make_tracker(control_plane: LocalControlPlane) -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def make(secrets: Any = None, **options: Any) -> Tracker:
        settings: dict[str, Any] = {"probe_interval": 0.5, "connecting_retry_after": 0.1}
        settings.update(options)
        if secrets is None:
            tracker = Tracker.for_api_client(
                control_plane.api_client(), TrackerOptions(**settings), registry=CollectorRegistry()
            )
        else:
            tracker = Tracker(secrets, TrackerOptions(**settings), registry=CollectorRegistry())
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        for key in tracker.clusters():
            remember_key(tracker, key)
        tracker.close()


def put_secret(core: client.CoreV1Api, namespace: str, name: str, data: dict[str, bytes]) -> str:
    body = {
        "metadata": {
            "name": name,
            "labels": {"cluster.x-k8s.io/cluster-name": name.rsplit("-", 1)[0]},
        },
        "type": "cluster.x-k8s.io/secret",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    try:
        created = core.create_namespaced_secret(namespace, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        created = core.replace_namespaced_secret(name, namespace, body)
    return str(created.metadata.resource_version)


def new_cluster_key(namespace: str, name: str = "") -> ClusterKey:
    return ClusterKey(namespace, name or f"c-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))


class Relay:
    """A TCP port on 127.0.0.1 that forwards to ``target`` until ``go_silent()``; from then
    on it holds every connection, old and new, and never sends another byte: a server that
    answered and then stopped answering."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = threading.Event()
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def go_silent(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(2)
        for conn in self.held:
            conn.close()
        self.listener.close()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn = self.listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)
            if self.silent.is_set():
                continue
            upstream = socket.create_connection(self.target)
            self.held.append(upstream)
            thread = threading.Thread(target=self._pipe, args=(conn, upstream), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self.stop.is_set() and not self.silent.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.1)
            for conn in readable:
                if self.silent.is_set():
                    return
                try:
                    data = conn.recv(65536)
                    if not data:
                        return
                    peers[conn].sendall(data)
                except OSError:
                    return


@contextlib.contextmanager
def relay(target: tuple[str, int]) -> Iterator[Relay]:
    forwarder = Relay(target)
    try:
        yield forwarder
    finally:
        forwarder.close()


# -- tests -------------------------------------------------------------------------------


def test_exactly_one_key_per_cluster_over_100_health_checks(
    make_tracker: Callable[..., Tracker],
    core: client.CoreV1Api,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
) -> None:
    tracker = make_tracker(probe_interval=0.02, etcd_probe_interval=None)
    keys = [new_cluster_key(namespace) for _ in range(2)]
    for key in keys:
        put_secret(core, namespace, f"{key.name}-etcd", certs.key_pair_to_secret_data(etcd_ca))
        tracker.track(key, etcd_endpoints=etcd.endpoints)
    accesses = {key: access_when_connected(tracker, key, etcd.endpoints) for key in keys}

    def probes() -> int:
        return tracker.stats().health_checks.get("etcd/success", 0)

    wait_for(lambda: probes() >= 200, 60, "200 etcd health checks")
    for key in keys:  # and 100 reconcile-equivalent checks through the reconciler's path
        for _ in range(50):
            status = tracker.etcd_access(key, etcd.endpoints).cluster_status()
            assert status.healthy, status.errors
    stats = tracker.stats()
    assert stats.keys_generated == len(keys)
    assert stats.certificates_issued == len(keys)
    for key in keys:
        assert tracker.etcd_access(key, etcd.endpoints).tls.key_pem == accesses[key].tls.key_pem
        health = tracker.health(key)
        assert health is not None and health.connected and health.etcd_ok
    assert accesses[keys[0]].tls.key_pem != accesses[keys[1]].tls.key_pem
    assert tracker.metrics.registry.get_sample_value(
        "kcp_tracker_keys_generated_total", {"algorithm": "rsa-2048"}
    ) == len(keys)


@pytest.fixture
def etcd_every_second(
    make_tracker: Callable[..., Tracker],
    core: client.CoreV1Api,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
    admin_kubeconfig: bytes,
) -> tuple[Tracker, ClusterKey]:
    """A connected cluster checked every 50 ms, its etcd probed at most once a second."""
    tracker = make_tracker(probe_interval=0.05, etcd_probe_interval=1.0)
    key = new_cluster_key(namespace)
    put_secret(core, namespace, f"{key.name}-etcd", certs.key_pair_to_secret_data(etcd_ca))
    put_secret(core, namespace, f"{key.name}-kubeconfig", {"value": admin_kubeconfig})
    access_when_connected(tracker, key, etcd.endpoints)
    return tracker, key


def test_the_reconcilers_reads_stand_in_for_the_api_server_probes(
    etcd_every_second: tuple[Tracker, ClusterKey],
) -> None:
    tracker, key = etcd_every_second

    def probes() -> int:
        return tracker.stats().health_checks.get("api_server/success", 0)

    before = probes()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a reconcile reading every 10 ms
        tracker.workload_client(key).answered()
        time.sleep(0.01)
    while_answered = probes() - before
    before = probes()
    time.sleep(1.0)
    assert while_answered <= 2 < probes() - before, (while_answered, probes() - before)


def test_a_healthy_etcd_is_probed_at_its_own_slower_cadence_and_a_failing_one_every_check(
    etcd_every_second: tuple[Tracker, ClusterKey], etcd: EtcdCluster
) -> None:
    tracker, key = etcd_every_second

    def count(sample: str) -> int:
        return tracker.stats().health_checks.get(sample, 0)

    api_before, etcd_before = count("api_server/success"), count("etcd/success")
    time.sleep(2.5)
    api_checks = count("api_server/success") - api_before
    etcd_checks = count("etcd/success") - etcd_before
    assert api_checks >= 10, api_checks
    assert 1 <= etcd_checks <= 4, (api_checks, etcd_checks)

    # etcd stops answering (the cluster's endpoints now point at nothing): within one
    # etcd interval the failure is seen, then etcd is probed on every check until the
    # cluster is marked down after five failed checks in a row.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused = f"127.0.0.1:{probe.getsockname()[1]}"
    tracker.track(key, etcd_endpoints=[refused])

    def down() -> bool:
        health = tracker.health(key)
        return health is not None and health.state == "down"

    wait_for(down, 5.0, "the cluster to be marked down")
    assert count("etcd/failure") >= 5


def test_the_reconcilers_etcd_calls_stand_in_for_the_trackers_etcd_probes(
    etcd_every_second: tuple[Tracker, ClusterKey], etcd: EtcdCluster
) -> None:
    tracker, key = etcd_every_second
    time.sleep(1.2)  # past the first interval, so a probe would be due without the calls

    def probes() -> int:
        return tracker.stats().health_checks.get("etcd/success", 0)

    before = probes()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert tracker.etcd_access(key, etcd.endpoints).cluster_status().healthy
        time.sleep(0.3)
    assert probes() - before <= 1  # at most one already due when the calls began


def test_a_certificate_is_renewed_before_expiry_and_never_handed_out_expired(
    make_tracker: Callable[..., Tracker],
    core: client.CoreV1Api,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
) -> None:
    tracker = make_tracker(certificate_validity=timedelta(seconds=3), probe_interval=0.2)
    key = new_cluster_key(namespace)
    put_secret(core, namespace, f"{key.name}-etcd", certs.key_pair_to_secret_data(etcd_ca))
    first = access_when_connected(tracker, key, etcd.endpoints)
    seen: dict[str, datetime] = {first.certificate_fingerprint: first.certificate_not_after}
    deadline = time.monotonic() + 6.5
    calls = 0
    while time.monotonic() < deadline:
        access = tracker.etcd_access(key, etcd.endpoints)
        now = datetime.now(UTC)
        # Never expired, and never past two thirds of its (3 s) life: >= ~1 s left.
        assert access.certificate_not_after - now > timedelta(seconds=0.5)
        seen.setdefault(access.certificate_fingerprint, access.certificate_not_after)
        if calls % 10 == 0:
            assert access.client(etcd.endpoints[calls % 3]).status().has_leader
        calls += 1
        time.sleep(0.05)
    assert len(seen) >= 3, seen  # renewed at least twice in 6.5 s
    assert tracker.stats().keys_generated == 1  # renewal re-signs the same key
    health = tracker.health(key)
    assert health is not None and health.connected and health.etcd_ok


def test_a_rotated_etcd_ca_yields_a_new_certificate(
    make_tracker: Callable[..., Tracker],
    control_plane: LocalControlPlane,
    core: client.CoreV1Api,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
) -> None:
    tracker = make_tracker(secret_refresh_interval=3600.0)
    secrets_informer = Informer(
        control_plane.api_client(), SECRETS, namespace=namespace, metadata_only=True
    )
    secrets_informer.add_handler(tracker.secret_event_handler())
    secrets_informer.start()
    try:
        assert secrets_informer.wait_for_sync(20)
        key = new_cluster_key(namespace)
        put_secret(core, namespace, f"{key.name}-etcd", certs.key_pair_to_secret_data(etcd_ca))
        before = access_when_connected(tracker, key, etcd.endpoints)
        assert certs.verify_signed_by(
            certs.decode_certificate(before.tls.cert_pem), etcd_ca.certificate
        )

        rotated = certs.new_certificate_authority("rotated-etcd-ca", algorithm="ecdsa-p256")
        rotated_at = time.monotonic()
        put_secret(core, namespace, f"{key.name}-etcd", certs.key_pair_to_secret_data(rotated))

        def reissued() -> EtcdAccess | None:
            try:
                access = tracker.etcd_access(key, etcd.endpoints)
            except NotConnected:
                return None
            return (
                access if access.certificate_fingerprint != before.certificate_fingerprint else None
            )

        after: EtcdAccess = wait_for(reissued, 10, "a certificate from the rotated CA")
        remember_key(tracker, key, after)
        assert time.monotonic() - rotated_at < 10
        cert = certs.decode_certificate(after.tls.cert_pem)
        assert certs.verify_signed_by(cert, rotated.certificate)
        assert not certs.verify_signed_by(cert, etcd_ca.certificate)
        assert after.tls.ca_pem == rotated.cert_pem
        assert tracker.stats().keys_generated == 1  # same key, new certificate
    finally:
        secrets_informer.stop()


def test_a_client_certificate_from_a_foreign_ca_is_refused_by_etcd_and_reported(
    make_tracker: Callable[..., Tracker],
    core: client.CoreV1Api,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
) -> None:
    # Mid-rotation: tls.crt trusts the old CA too (so etcd's server certificate verifies),
    # but signs with a new CA etcd does not trust yet.
    foreign = certs.new_certificate_authority("foreign-etcd-ca", algorithm="ecdsa-p256")
    data = {"tls.crt": foreign.cert_pem + etcd_ca.cert_pem, "tls.key": foreign.key_pem}
    tracker = make_tracker(probe_interval=0.2)
    key = new_cluster_key(namespace)
    put_secret(core, namespace, f"{key.name}-etcd", data)
    tracker.track(key, etcd_endpoints=etcd.endpoints)

    def refused() -> bool:
        health = tracker.health(key)
        return health is not None and health.etcd_ok is False

    wait_for(refused, 30, "the etcd probe to fail")
    health = tracker.health(key)
    assert health is not None and not health.connected
    assert "refused our client certificate" in health.last_error, health.last_error
    with pytest.raises(NotConnected) as caught:
        tracker.etcd_access(key, etcd.endpoints)
    assert "refused our client certificate" in str(caught.value)

    # The same certificate on a channel of its own: etcd refuses it with a typed, clear error.
    issued = next(iter(tracker._certificates._cache.values()))
    GENERATED_KEYS.append(issued.tls.key_pem)
    assert certs.verify_signed_by(issued.pair.certificate, foreign.certificate)
    with (
        EtcdClient.open(etcd.endpoints[0], issued.tls, transport="grpc") as direct,
        pytest.raises(EtcdTLSError, match="refused our client certificate"),
    ):
        direct.status()


def test_deleting_the_cluster_evicts_everything_within_a_second(
    make_tracker: Callable[..., Tracker],
    control_plane: LocalControlPlane,
    core: client.CoreV1Api,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
    admin_kubeconfig: bytes,
) -> None:
    custom = client.CustomObjectsApi(control_plane.api_client())
    created = custom.create_namespaced_custom_object(
        "cluster.x-k8s.io",
        "v1beta2",
        namespace,
        "clusters",
        {
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "kind": "Cluster",
            "metadata": {"name": "doomed"},
            "spec": {"clusterNetwork": {"serviceDomain": "cluster.local"}},
        },
    )
    key = ClusterKey.from_object(created)
    put_secret(core, namespace, "doomed-etcd", certs.key_pair_to_secret_data(etcd_ca))
    put_secret(core, namespace, "doomed-kubeconfig", {"value": admin_kubeconfig})

    tracker = make_tracker()
    registry = tracker.metrics.registry
    informer = Informer(control_plane.api_client(), CLUSTERS, namespace=namespace)
    informer.add_handler(tracker.cluster_event_handler())
    informer.start()
    try:
        assert informer.wait_for_sync(20)
        access = access_when_connected(tracker, key, etcd.endpoints)
        assert access.client(etcd.endpoints[0]).status().has_leader
        workload = wait_for(lambda: _workload(tracker, key), 20, "the workload client")
        assert client.VersionApi(workload.api_client).get_code().git_version
        labels = {"namespace": namespace, "name": "doomed"}
        assert registry.get_sample_value("kcp_tracker_connection_up", labels) == 1
        channels_before = tracker.etcd_pool.stats().size
        assert channels_before >= 1

        custom.delete_namespaced_custom_object(
            "cluster.x-k8s.io", "v1beta2", namespace, "clusters", "doomed"
        )
        deleted_at = time.monotonic()

        def everything_gone() -> bool:
            return (
                tracker.health(key) is None
                and tracker._keys.peek(key) is None
                and len(tracker._certificates) == 0
                and workload.closed
                and registry.get_sample_value("kcp_tracker_connection_up", labels) is None
                and registry.get_sample_value("kcp_tracker_clusters") == 0
                and tracker.etcd_pool.stats().size == 0
            )

        wait_for(everything_gone, 1.0, "key, certificate, clients, channels and series to go")
        assert time.monotonic() - deleted_at < 1.0
        with pytest.raises(NotConnected) as caught:  # a straggling reconcile re-tracks nothing
            tracker.etcd_access(key, etcd.endpoints)
        assert caught.value.reason == "evicted"
        assert tracker.clusters() == []
    finally:
        informer.stop()


def _workload(tracker: Tracker, key: ClusterKey) -> Any:
    try:
        return tracker.workload_client(key)
    except NotConnected:
        return None


def test_the_workload_client_is_rebuilt_when_its_kubeconfig_secret_changes(
    make_tracker: Callable[..., Tracker],
    control_plane: LocalControlPlane,
    core: client.CoreV1Api,
    namespace: str,
    admin_kubeconfig: bytes,
) -> None:
    tracker = make_tracker(secret_refresh_interval=0.2, probe_interval=0.2)
    key = new_cluster_key(namespace)
    put_secret(core, namespace, f"{key.name}-kubeconfig", {"value": admin_kubeconfig})
    first = wait_for(lambda: _workload(tracker, key), 20, "the workload client")
    health = tracker.health(key)
    assert health is not None and health.api_server_ok

    # Same server, different content (another user name): a new client, the old one closed.
    changed = kubeconfig_for(control_plane, user="workload-operator")
    assert changed != admin_kubeconfig
    put_secret(core, namespace, f"{key.name}-kubeconfig", {"value": changed})
    second = wait_for(
        lambda: (c := _workload(tracker, key)) is not None and c is not first and c,
        10,
        "a rebuilt client",
    )
    assert first.closed and not second.closed
    assert client.VersionApi(second.api_client).get_code().git_version


def test_a_401_disconnects_at_once_and_keeps_the_key(
    make_tracker: Callable[..., Tracker],
    core: client.CoreV1Api,
    control_plane: LocalControlPlane,
    namespace: str,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
) -> None:
    ca_data = base64.b64encode((control_plane.work_dir / "pki" / "ca.crt").read_bytes()).decode()
    token_kubeconfig = (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: w, user: u}}]\n"
        f"clusters: [{{name: w, cluster: {{server: '{control_plane.server_url}', "
        f"certificate-authority-data: {ca_data}}}}}]\n"
        "users: [{name: u, user: {token: not-a-valid-token}}]\n"
    ).encode()
    tracker = make_tracker(probe_interval=5.0)
    key = new_cluster_key(namespace)
    put_secret(core, namespace, f"{key.name}-etcd", certs.key_pair_to_secret_data(etcd_ca))
    put_secret(core, namespace, f"{key.name}-kubeconfig", {"value": token_kubeconfig})
    tracker.track(key, etcd_endpoints=etcd.endpoints)
    wait_for(lambda: (h := tracker.health(key)) is not None and h.state == "down", 20, "down")
    health = tracker.health(key)
    assert health is not None
    assert health.consecutive_failures == 1
    assert "401" in health.last_error
    with pytest.raises(NotConnected) as caught:
        tracker.workload_client(key)
    assert caught.value.reason == "down"
    assert tracker._keys.peek(key) is not None
    remember_key(tracker, key)
    assert tracker.stats().health_checks.get("api_server/unauthorized") == 1


def test_a_silent_cluster_does_not_slow_twenty_healthy_ones_and_is_marked_down(
    make_tracker: Callable[..., Tracker],
    control_plane: LocalControlPlane,
    etcd: EtcdCluster,
    etcd_ca: KeyPair,
    admin_kubeconfig: bytes,
    namespace: str,
) -> None:
    """The sick cluster answers through relays until it has connected, then its API server
    and etcd stop answering (connections accepted, never a byte): after five failed checks
    it is marked down, while the healthy ones keep being probed on time."""
    secrets = InMemorySecrets()
    ca_data = certs.key_pair_to_secret_data(etcd_ca)
    healthy = [new_cluster_key(namespace, f"ok{i}") for i in range(20)]
    for key in healthy:
        secrets.put(namespace, f"{key.name}-etcd", ca_data)
        secrets.put(namespace, f"{key.name}-kubeconfig", {"value": admin_kubeconfig})
    sick = new_cluster_key(namespace, "sick")
    api_host, api_port = control_plane.server_url.removeprefix("https://").rsplit(":", 1)
    etcd_host, etcd_port = etcd.endpoints[0].rsplit(":", 1)
    with (
        relay((api_host, int(api_port))) as api_relay,
        relay((etcd_host, int(etcd_port))) as etcd_relay,
    ):
        sick_kubeconfig = kubeconfig_for(
            control_plane, server=f"https://127.0.0.1:{api_relay.port}"
        )
        secrets.put(namespace, "sick-etcd", ca_data)
        secrets.put(namespace, "sick-kubeconfig", {"value": sick_kubeconfig})
        sick_endpoints = [f"127.0.0.1:{etcd_relay.port}"]

        tracker = make_tracker(
            secrets,
            probe_interval=1.0,
            probe_timeout=0.5,
            probe_workers=4,
            key_algorithm="ecdsa-p256",
        )
        tracker.track(sick, etcd_endpoints=sick_endpoints)
        for key in healthy:
            tracker.track(key, etcd_endpoints=etcd.endpoints)
        access_when_connected(tracker, sick, sick_endpoints, timeout=60)
        for key in healthy:
            access_when_connected(tracker, key, etcd.endpoints, timeout=60)
        wait_for(lambda: _workload(tracker, sick), 20, "the sick cluster's workload client")
        api_relay.go_silent()
        etcd_relay.go_silent()
        silent_since = time.monotonic()

        # Watch the healthy clusters' probes and lookups while the sick one times out.
        slowest_lookup = 0.0
        gaps: dict[ClusterKey, float] = dict.fromkeys(healthy, 0.0)
        last_seen: dict[ClusterKey, datetime | None] = {k: None for k in healthy}
        last_change: dict[ClusterKey, float] = dict.fromkeys(healthy, time.monotonic())
        sick_down_after: float | None = None
        while time.monotonic() - silent_since < 8.0:
            for key in healthy:
                t0 = time.perf_counter()
                tracker.etcd_access(key, etcd.endpoints)
                tracker.workload_client(key)
                slowest_lookup = max(slowest_lookup, time.perf_counter() - t0)
                health = tracker.health(key)
                assert health is not None and health.connected, health
                now = time.monotonic()
                if health.last_probe_time != last_seen[key]:
                    last_seen[key] = health.last_probe_time
                    last_change[key] = now
                gaps[key] = max(gaps[key], now - last_change[key])
            t0 = time.perf_counter()
            with contextlib.suppress(NotConnected):
                tracker.etcd_access(sick, sick_endpoints)
            slowest_lookup = max(slowest_lookup, time.perf_counter() - t0)
            sick_health = tracker.health(sick)
            if sick_down_after is None and sick_health is not None and sick_health.state == "down":
                sick_down_after = time.monotonic() - silent_since
            time.sleep(0.05)

        # A lookup that waited on the sick cluster's check would take its probe timeout;
        # below that is scheduling (the suite shares two cores with dozens of processes).
        assert slowest_lookup < 0.5, f"a lookup took {slowest_lookup * 1000:.1f} ms"
        # Probed every ~1 s (+/-10 %); a check of the sick cluster takes ~1 s and must not
        # hold the others back.
        assert max(gaps.values()) < 3.0, gaps
        sick_health = wait_for(
            lambda: (h := tracker.health(sick)) is not None and h.state == "down" and h,
            20,
            "the silent cluster to be marked down",
        )
        # Five failed checks about a second apart, not the first failure.
        assert sick_down_after is None or sick_down_after > 3.5, sick_down_after
        assert sick_health.consecutive_failures >= 5
        assert sick_health.api_server_ok is False and sick_health.etcd_ok is False
        assert "did not answer" in sick_health.last_error or "timeout" in sick_health.last_error
        stats = tracker.stats()
        assert stats.health_checks.get("api_server/timeout", 0) >= 5
        assert stats.keys_generated == len(healthy) + 1
        with pytest.raises(NotConnected) as caught:
            tracker.etcd_access(sick, sick_endpoints)
        assert caught.value.reason == "down"


def test_no_key_material_reached_a_file_or_a_log_line(
    captured_logs: io.StringIO, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Runs last: scans what this module's trackers generated against files written
    since the module started (in /tmp, the working directory and pytest's temp dirs)
    and every captured log line."""
    assert GENERATED_KEYS, "the tests above should have recorded the generated keys"
    needles: set[bytes] = set()
    for material in GENERATED_KEYS:
        if material.startswith(b"-----"):
            body = [line for line in material.splitlines() if not line.startswith(b"-----")]
            needles.update(line for line in body if len(line) >= 40)
            needles.add(base64.b64encode(material)[20:80])
        else:
            needles.add(material[-48:])  # DER: the tail holds key bytes, not structure
    logs = captured_logs.getvalue()
    assert "tracking cluster" in logs  # the capture works
    assert "PRIVATE KEY" not in logs
    for needle in needles:
        assert needle.decode("latin-1") not in logs

    roots = {Path("/tmp"), Path.cwd(), tmp_path_factory.getbasetemp()}
    scanned = 0
    for root in roots:
        for directory, _, files in os.walk(root):
            if "/proc" in directory:
                continue
            for name in files:
                path = Path(directory, name)
                try:
                    info = path.stat()
                    if info.st_mtime < STARTED - 1 or info.st_size > 8 * 1024 * 1024:
                        continue
                    content = path.read_bytes()
                except OSError:
                    continue
                scanned += 1
                for needle in needles:
                    assert needle not in content, f"key material found in {path}"
    assert scanned > 0
