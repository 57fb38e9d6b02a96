"""The reconciler end to end on an in-memory API server, cache and tracker."""

from __future__ import annotations

import base64
import copy
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.groups import EVENT, KUBEADM_CONTROL_PLANE, SECRET
from kcp.certs import (
    CLUSTER_SECRET_TYPE,
    KeyPair,
    decode_certificate,
    key_pair_from_secret_data,
    key_pair_to_secret_data,
    new_certificate_authority,
    parse_kubeconfig,
)
from kcp.controlplane.certificates import reconcile_certificates
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.kubeadm_config import desired_kubeadm_config_spec
from kcp.controlplane.reconciler import KubeadmControlPlaneReconciler, ReconcilerOptions
from kcp.controlplane.secrets import SecretStore
from kcp.runtime.controller import ObjectKey, Result
from kcp.runtime.ratelimit import ItemExponentialRateLimiter
from kcp.tracker.errors import ClusterSecretError, NotConnected
from tests.unit.controlplane.builders import (
    NOW,
    as_cabpk_leaves_it,
    cluster,
    condition,
    kcp,
    machine,
    node,
    pod,
    ts,
)
from tests.unit.controlplane.fakes import FakeCache, FakeKube, FakeTracker, etcd_status

KEY = ObjectKey("ns", "cp")
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")


@pytest.fixture
def kube() -> FakeKube:
    api = FakeKube()
    api.put(
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "LocalMachineTemplate",
            "metadata": {"name": "tmpl", "namespace": "ns"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"from-template": "yes"}},
                    "spec": {"size": "s"},
                }
            },
        }
    )
    return api


@pytest.fixture
def tracker() -> FakeTracker:
    return FakeTracker()


def _reconciler(
    kube: FakeKube, tracker: FakeTracker, failures: ItemExponentialRateLimiter | None = None
) -> KubeadmControlPlaneReconciler:
    return KubeadmControlPlaneReconciler(
        kube,  # type: ignore[arg-type]
        FakeCache(kube),
        tracker,
        recorder=EventRecorder(kube),  # type: ignore[arg-type]
        options=ReconcilerOptions(expectation_timeout=0.0),
        clock=lambda: NOW,
        workload_api=lambda api: api,
        failures=failures,
    )


def _kcp(kube: FakeKube) -> dict[str, Any]:
    found = kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp")
    assert found is not None
    return found


def _condition(kube: FakeKube, kind: str) -> dict[str, Any]:
    found = c.get_condition(_kcp(kube), kind)
    assert found is not None, kind
    return found


def _events(kube: FakeKube) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in kube.of_kind("Event")]


def _secret_data(kube: FakeKube, name: str) -> dict[str, bytes]:
    secret = kube.get(SECRET, "ns", name)
    assert secret is not None
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_waits_for_the_owner_reference(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(cluster=None))
    kube.put(cluster())
    result = _reconciler(kube, tracker).reconcile(KEY)
    assert result.requeue_after is None
    assert "finalizers" not in _kcp(kube)["metadata"]


def test_first_reconcile_creates_certificates_kubeconfig_and_the_first_machine(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    result = _reconciler(kube, tracker).reconcile(KEY)
    assert result.requeue_after is not None
    obj = _kcp(kube)
    assert obj["metadata"]["finalizers"] == [labels.KUBEADM_CONTROL_PLANE_FINALIZER]
    for suffix in ("ca", "etcd", "proxy", "sa", "kubeconfig"):
        secret = kube.get(SECRET, "ns", f"c1-{suffix}")
        assert secret is not None, suffix
        assert secret["type"] == CLUSTER_SECRET_TYPE
        assert secret["metadata"]["labels"][labels.CLUSTER_NAME_LABEL] == "c1"
        owner = secret["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "KubeadmControlPlane",
            "kcp-uid-1",
            True,
        )
    ca = key_pair_from_secret_data(_secret_data(kube, "c1-ca"), secret_name="ns/c1-ca")
    assert ca.subject == "CN=kubernetes"
    config = parse_kubeconfig(_secret_data(kube, "c1-kubeconfig")["value"])
    assert config.server == "https://127.0.0.1:6443"
    assert config.user_name == "c1-admin"
    admin = decode_certificate(config.client_cert_pem or b"")
    assert admin.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    machines = kube.of_kind("Machine")
    assert len(machines) == 1
    m = machines[0]
    name = m["metadata"]["name"]
    assert name.startswith("cp-") and len(name) == len("cp-") + 5
    assert m["spec"]["version"] == "v1.34.4"
    assert m["spec"]["clusterName"] == "c1"
    assert m["spec"]["bootstrap"]["configRef"] == {
        "apiGroup": "bootstrap.cluster.x-k8s.io",
        "kind": "KubeadmConfig",
        "name": name,
    }
    assert m["metadata"]["labels"][labels.MACHINE_CONTROL_PLANE_LABEL] == ""
    # Cluster API's hook, so core waits for kcp to remove the member of a deleting Machine.
    assert m["metadata"]["annotations"][labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION] == ""
    config_obj = kube.of_kind("KubeadmConfig")[0]
    assert (
        "initConfiguration" in config_obj["spec"] and "joinConfiguration" not in config_obj["spec"]
    )
    infra = kube.of_kind("LocalMachine")[0]
    assert infra["spec"] == {"size": "s"}
    assert infra["metadata"]["labels"]["from-template"] == "yes"
    assert infra["metadata"]["annotations"][labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION] == "tmpl"
    assert _condition(kube, c.CERTIFICATES_AVAILABLE)["status"] == c.TRUE
    assert _condition(kube, c.SCALING_UP)["status"] == c.TRUE
    assert ("Normal", "ControlPlaneInitializing") in [(t, r) for t, r, _ in _events(kube)]


def test_existing_authorities_are_never_replaced(kube: FakeKube, tracker: FakeTracker) -> None:
    theirs = new_certificate_authority("users-own-ca", now=NOW)
    data = {k: base64.b64encode(v).decode() for k, v in key_pair_to_secret_data(theirs).items()}
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "c1-ca", "namespace": "ns"},
            "data": data,
        }
    )
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _reconciler(kube, tracker).reconcile(KEY)
    secret = kube.get(SECRET, "ns", "c1-ca")
    assert secret is not None
    assert secret["data"] == data
    assert "ownerReferences" not in secret["metadata"]  # not our type: not adopted
    kubeconfig = parse_kubeconfig(_secret_data(kube, "c1-kubeconfig")["value"])
    assert kubeconfig.ca_pem == theirs.cert_pem


def test_missing_authority_after_init_is_reported_not_regenerated(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    del kube.objects[("Secret", "ns", "c1-etcd")]
    tracker.etcd = etcd_status([])
    first = reconciler.reconcile(KEY)
    assert kube.get(SECRET, "ns", "c1-etcd") is None
    cert = _condition(kube, c.CERTIFICATES_AVAILABLE)
    assert cert["status"] == c.FALSE
    assert "Secret ns/c1-etcd not found" in cert["message"]
    assert ("Warning", "CertificatesNotAvailable") in [(t, r) for t, r, _ in _events(kube)]
    second = reconciler.reconcile(KEY)
    assert first.requeue_after == 5.0
    assert second.requeue_after == 10.0  # backoff doubles while the problem stays


def test_garbage_in_a_secret_names_the_secret_and_key(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": CLUSTER_SECRET_TYPE,
            "metadata": {"name": "c1-proxy", "namespace": "ns"},
            "data": {"tls.crt": base64.b64encode(b"garbage").decode(), "tls.key": ""},
        }
    )
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _reconciler(kube, tracker).reconcile(KEY)
    message = _condition(kube, c.CERTIFICATES_AVAILABLE)["message"]
    assert "ns/c1-proxy" in message
    assert "tls.key" in message or "tls.crt" in message
    assert kube.of_kind("Machine") == []  # no Machine joins without certificates


def test_missing_template_is_a_user_error_not_an_exception(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    del kube.objects[("LocalMachineTemplate", "ns", "tmpl")]
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    result = _reconciler(kube, tracker).reconcile(KEY)
    assert result.requeue_after == 5.0
    warnings = [m for t, r, m in _events(kube) if r == "FailedInitialization"]
    assert warnings and "LocalMachineTemplate ns/tmpl" in warnings[0]
    assert "does not exist" in _condition(kube, c.SCALING_UP)["message"]
    assert kube.of_kind("Machine") == []


def test_user_errors_back_off_in_the_queues_failure_history(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    template = kube.objects.pop(("LocalMachineTemplate", "ns", "tmpl"))
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    failures = ItemExponentialRateLimiter()
    reconciler = _reconciler(kube, tracker, failures)
    failures.when(KEY)  # an exception's retry before: the same history
    result = reconciler.reconcile(KEY)
    assert result == Result(requeue_after=10.0, backed_off=True)
    assert failures.num_requeues(KEY) == 2
    kube.put(template)
    fixed = reconciler.reconcile(KEY)
    assert not fixed.backed_off  # the controller forgets the history on this one
    assert failures.num_requeues(KEY) == 2


def test_invalid_replicas_stop_scaling_with_a_condition(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=2))
    kube.put(cluster())
    _reconciler(kube, tracker).reconcile(KEY)
    assert kube.of_kind("Machine") == []
    scaling = _condition(kube, c.SCALING_UP)
    assert (scaling["status"], scaling["reason"]) == (c.UNKNOWN, "InvalidSpec")
    assert "spec.replicas is 2" in scaling["message"]


def test_paused_cluster_only_reports_paused(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster(paused=True))
    _reconciler(kube, tracker).reconcile(KEY)
    assert _condition(kube, c.PAUSED)["status"] == c.TRUE
    assert kube.of_kind("Machine") == []
    assert kube.get(SECRET, "ns", "c1-ca") is None


def _kubeadm_config_map() -> dict[str, Any]:
    """What `kubeadm init` uploads once the first control-plane node is up."""
    return {
        "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {
            "ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\n"
            "kind: ClusterConfiguration\nkubernetesVersion: v1.34.4\n"
        },
    }


def _running_control_plane(
    kube: FakeKube,
    tracker: FakeTracker,
    names: list[str],
    *,
    kubeadm_init_done: bool = True,
    **kw: Any,
) -> None:
    """Machines `names` as they are once running: the first made by `kubeadm init`, the others
    joined, each KubeadmConfig as kcp created it and CABPK then wrote into it."""
    owner = kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp")
    assert owner is not None
    store = SecretStore(kube, FakeCache(kube).secret)  # type: ignore[arg-type]
    assert reconcile_certificates(store, owner, "c1", may_generate=True, now=NOW).available
    for index, name in enumerate(names):
        kube.put(machine(name, address=name, conditions=[condition(c.READY)], **kw))
        created = desired_kubeadm_config_spec(
            owner["spec"]["kubeadmConfigSpec"], init=index == 0, version=owner["spec"]["version"]
        )
        kube.put(
            {
                "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
                "kind": "KubeadmConfig",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": as_cabpk_leaves_it(created),
            }
        )
        tracker.workload.put({"kind": "Node", "metadata": {"name": name}, **node(name)})
        for comp in COMPONENTS:
            tracker.workload.put({"kind": "Pod", **pod(comp, name)})
    if kubeadm_init_done:
        tracker.workload.put(_kubeadm_config_map())
    tracker.etcd = etcd_status(names)


def test_only_the_cluster_ca_is_kept_parsed_after_validation(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=1))
    owner = kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp")
    assert owner is not None
    store = SecretStore(kube, FakeCache(kube).secret)  # type: ignore[arg-type]
    assert reconcile_certificates(store, owner, "c1", may_generate=True, now=NOW).available
    assert reconcile_certificates(store, owner, "c1", may_generate=False, now=NOW).available
    kept = dict(store.parsed._items)
    assert {key[0] for key in kept} == {"ca", "etcd", "proxy", "sa"}
    assert sum(isinstance(value, KeyPair) for value in kept.values()) == 1
    assert all(isinstance(v, KeyPair) == (k[0] == "ca") for k, v in kept.items())


def test_healthy_control_plane_is_available(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    result = _reconciler(kube, tracker).reconcile(KEY)
    for kind in (
        c.AVAILABLE,
        c.ETCD_CLUSTER_HEALTHY,
        c.CONTROL_PLANE_COMPONENTS_HEALTHY,
        c.INITIALIZED,
    ):
        assert _condition(kube, kind)["status"] == c.TRUE, kind
    status = _kcp(kube)["status"]
    assert (status["replicas"], status["readyReplicas"], status["upToDateReplicas"]) == (3, 3, 3)
    assert status["initialization"] == {"controlPlaneInitialized": True}
    assert result.requeue_after is not None and 600.0 <= result.requeue_after <= 720.0
    assert tracker.answers == ["answered"]  # the tracker may skip a probe for it
    machine_a = kube.get(kube.resource_for("cluster.x-k8s.io", "Machine"), "ns", "a")
    assert machine_a is not None
    kinds = {x["type"]: x["status"] for x in machine_a["status"]["conditions"]}
    assert kinds[c.ETCD_MEMBER_HEALTHY] == c.TRUE
    assert kinds[c.UP_TO_DATE] == c.TRUE
    # Reached as Cluster API does: through the workload API server to each etcd Pod.
    assert tracker.endpoints_seen[-1] == (
        "kube-system/etcd-a:2379",
        "kube-system/etcd-b:2379",
        "kube-system/etcd-c:2379",
    )


def test_machines_cabpk_wrote_into_are_not_rolled_out(kube: FakeKube, tracker: FakeTracker) -> None:
    """CABPK writes the endpoint and join discovery into every KubeadmConfig it serves."""
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    config_b = kube.get(kube.resource_for("bootstrap.cluster.x-k8s.io", "KubeadmConfig"), "ns", "b")
    assert config_b is not None and "discovery" in config_b["spec"]["joinConfiguration"]
    for _ in range(2):
        _reconciler(kube, tracker).reconcile(KEY)
    assert sorted(m["metadata"]["name"] for m in kube.of_kind("Machine")) == ["a", "b", "c"]
    assert _condition(kube, c.ROLLING_OUT)["status"] == c.FALSE
    assert _condition(kube, c.MACHINES_UP_TO_DATE)["status"] == c.TRUE
    assert _kcp(kube)["status"]["upToDateReplicas"] == 3


def _initialized(kube: FakeKube) -> bool:
    flag = _kcp(kube)["status"]["initialization"]["controlPlaneInitialized"]
    assert (_condition(kube, c.INITIALIZED)["status"] == c.TRUE) == flag
    return bool(flag)


def test_initialized_once_kubeadm_init_uploaded_its_config(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    """As Cluster API's KCP: never from the Cluster (core copies the flag from us), nor from a
    Node (the kubelet registers it before `kubeadm init` has finished)."""
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a"], kubeadm_init_done=False)
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    assert not _initialized(kube)
    tracker.workload.put(_kubeadm_config_map())
    reconciler.reconcile(KEY)
    assert _initialized(kube)
    owner = kube.get(kube.resource_for("cluster.x-k8s.io", "Cluster"), "ns", "c1")
    assert owner is not None and "controlPlaneInitialized" not in owner["status"]["initialization"]
    del tracker.workload.objects[("ConfigMap", "kube-system", "kubeadm-config")]
    reconciler.reconcile(KEY)
    assert _initialized(kube)  # once set, it stays


@pytest.mark.parametrize("leaving", ["deleting", "remediated"])
def test_init_finishing_while_the_only_machine_leaves_does_not_count(
    kube: FakeKube, tracker: FakeTracker, leaving: str
) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    if leaving == "deleting":
        _running_control_plane(kube, tracker, ["a"], deleting=True)
    else:
        unhealthy = [
            condition(c.READY),
            condition(c.HEALTH_CHECK_SUCCEEDED, c.FALSE, "UnhealthyNode"),
            condition(c.OWNER_REMEDIATED, c.FALSE, "WaitingForRemediation"),
        ]
        _running_control_plane(kube, tracker, ["a"])
        kube.objects[("Machine", "ns", "a")]["status"]["conditions"] = unhealthy
    _reconciler(kube, tracker).reconcile(KEY)
    assert not _initialized(kube)


def test_healthy_requeues_are_spread_so_waves_drift_apart(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a"])
    reconciler = _reconciler(kube, tracker)
    delays = {reconciler.reconcile(KEY).requeue_after for _ in range(20)}
    assert all(d is not None and 600.0 <= d <= 720.0 for d in delays), delays
    assert len(delays) > 10


def test_not_connected_requeues_at_once(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a"])
    tracker.not_connected = NotConnected(
        "cluster ns/c1 is being connected", reason="connecting", retry_after=1.0
    )
    result = _reconciler(kube, tracker).reconcile(KEY)
    assert result.requeue_after == 1.0
    etcd = _condition(kube, c.ETCD_CLUSTER_HEALTHY)
    assert (etcd["status"], etcd["reason"]) == (c.UNKNOWN, c.CONNECTION_DOWN_REASON)
    assert len(kube.of_kind("Machine")) == 1  # no scale up without health
    assert tracker.answers == []


def test_a_cluster_that_never_connects_is_reported_after_several_checks(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a"])
    tracker.not_connected = NotConnected(
        "cluster ns/c1 is being connected", reason="connecting", retry_after=1.0
    )
    tracker.cluster_health = SimpleNamespace(
        consecutive_failures=2, last_error="connection refused by 10.0.0.1:6443"
    )
    _reconciler(kube, tracker).reconcile(KEY)
    assert not [m for _, r, m in _events(kube) if r == "WorkloadClusterUnreachable"]
    early = _condition(kube, c.CONTROL_PLANE_COMPONENTS_HEALTHY)["message"]
    assert "being connected" in early and "kubeconfig Secret" not in early
    tracker.cluster_health = SimpleNamespace(
        consecutive_failures=5, last_error="connection refused by 10.0.0.1:6443"
    )
    _reconciler(kube, tracker).reconcile(KEY)
    [message] = [m for _, r, m in _events(kube) if r == "WorkloadClusterUnreachable"]
    assert "connection refused by 10.0.0.1:6443" in message
    assert "kubeconfig Secret ns/c1-kubeconfig" in message
    for kind in (c.CONTROL_PLANE_COMPONENTS_HEALTHY, c.ETCD_CLUSTER_HEALTHY):
        found = _condition(kube, kind)
        assert (found["status"], found["reason"]) == (c.UNKNOWN, c.CONNECTION_DOWN_REASON), kind
        assert "connection refused by 10.0.0.1:6443" in found["message"], kind
        assert (
            "check that the control-plane endpoint in its kubeconfig Secret ns/c1-kubeconfig"
            in (found["message"])
        ), kind


def test_a_bad_kubeconfig_secret_is_the_users_to_fix(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a"])
    tracker.not_connected = ClusterSecretError(
        "Secret ns/c1-kubeconfig: data key value is missing; put the kubeconfig there",
        retry_after=10.0,
    )
    result = _reconciler(kube, tracker).reconcile(KEY)
    assert result.requeue_after == 5.0  # the user-error backoff, not a tight loop
    warnings = [m for t, r, m in _events(kube) if r == "InvalidClusterSecret"]
    assert warnings == [
        "Secret ns/c1-kubeconfig: data key value is missing; put the kubeconfig there"
    ]
    components = _condition(kube, c.CONTROL_PLANE_COMPONENTS_HEALTHY)
    assert "c1-kubeconfig" in components["message"]


def test_direct_etcd_access_dials_the_advertised_addresses(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.etcd = etcd_status(["a", "b", "c"])
    reconciler = KubeadmControlPlaneReconciler(
        kube,  # type: ignore[arg-type]
        FakeCache(kube),
        tracker,
        recorder=EventRecorder(kube),  # type: ignore[arg-type]
        options=ReconcilerOptions(expectation_timeout=0.0, etcd_access="direct"),
        clock=lambda: NOW,
        workload_api=lambda api: api,
    )
    reconciler.reconcile(KEY)
    assert tracker.endpoints_seen[-1] == ("a:2379", "b:2379", "c:2379")


def _machine(kube: FakeKube, name: str) -> dict[str, Any] | None:
    return kube.get(kube.resource_for("cluster.x-k8s.io", "Machine"), "ns", name)


def _as_core_deletes_it(kube: FakeKube, name: str, *, drained: bool) -> None:
    """Cluster API core's part: the Machine is deleting; once drained it waits on the hooks."""
    obj = kube.objects[("Machine", "ns", name)]
    obj["metadata"]["deletionTimestamp"] = ts(NOW)
    obj["metadata"]["finalizers"] = ["machine.cluster.x-k8s.io"]
    reason = "WaitingForPreTerminateHook" if drained else "DrainingNode"
    obj["status"]["conditions"] = [
        x for x in obj["status"]["conditions"] if x["type"] != c.DELETING
    ] + [condition(c.DELETING, c.TRUE, reason=reason)]
    kube.put(obj)


def _hook(obj: dict[str, Any] | None) -> bool:
    assert obj is not None
    return labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION in obj["metadata"]["annotations"]


def test_scale_down_moves_leadership_deletes_then_removes_the_member_from_the_hook(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    kube.objects[("Machine", "ns", "a")]["metadata"]["creationTimestamp"] = ts(
        NOW - timedelta(hours=3)
    )
    kube.objects[("Machine", "ns", "a")]["metadata"]["finalizers"] = ["machine.cluster.x-k8s.io"]
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    # "a" is the oldest and leads (member 1): leadership goes to the newest healthy member
    # before the Machine is deleted; its member stays until core has drained it.
    assert [call[0] for call in tracker.etcd_calls] == ["move_leader"]
    deleting = _machine(kube, "a")
    assert deleting is not None and deleting["metadata"].get("deletionTimestamp")
    assert _hook(deleting)
    reasons = [r for _, r, _ in _events(kube)]
    assert "ScalingDown" in reasons and "EtcdMemberRemoved" not in reasons
    assert _condition(kube, c.SCALING_DOWN)["status"] == c.TRUE
    # Still draining: nothing more.
    _as_core_deletes_it(kube, "a", drained=False)
    reconciler.reconcile(KEY)
    assert [call[0] for call in tracker.etcd_calls] == ["move_leader"]
    assert _hook(_machine(kube, "a"))
    # Drained, core waits on the hook: the member goes, then the hook.
    _as_core_deletes_it(kube, "a", drained=True)
    tracker.etcd = etcd_status(["a", "b", "c"], leader=3)
    reconciler.reconcile(KEY)
    assert tracker.etcd_calls[-1] == ("remove_member", 1)
    assert not _hook(_machine(kube, "a"))
    removed = [m for _, r, m in _events(kube) if r == "EtcdMemberRemoved"]
    assert removed == ["Removed etcd member a of Machine a"]


def test_kubectl_delete_machine_removes_its_member_once_drained(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    """A Machine deleted by someone else goes the same way: leadership, member, hook."""
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    assert all(_hook(m) for m in kube.of_kind("Machine"))  # put on Machines that lacked it
    _as_core_deletes_it(kube, "a", drained=True)
    reconciler.reconcile(KEY)
    # "a" leads (member 1): leadership to the newest other Machine's member first.
    assert tracker.etcd_calls[0][0] == "move_leader"
    assert tracker.etcd_calls[1] == ("remove_member", 1)
    assert not _hook(_machine(kube, "a"))
    removed = [m for _, r, m in _events(kube) if r == "EtcdMemberRemoved"]
    assert len(removed) == 1 and removed[0].startswith("Removed etcd member a of Machine a;")
    assert "etcd leadership moved to" in removed[0]
    assert len(kube.of_kind("Machine")) == 3  # nothing else happens while one is deleting


def test_the_hook_holds_a_member_whose_removal_would_lose_quorum(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.etcd = etcd_status(["a", "b", "c"], unhealthy=["c"])
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    _as_core_deletes_it(kube, "a", drained=True)
    reconciler.reconcile(KEY)
    assert tracker.etcd_calls == []
    assert _hook(_machine(kube, "a"))
    etcd = _condition(kube, c.ETCD_CLUSTER_HEALTHY)
    assert etcd["status"] == c.FALSE
    assert (
        "Machine a is being deleted but keeps its etcd member: removing etcd member a would "
        "leave 1 healthy of 2 members, fewer than the quorum of 2 (not healthy: c)"
    ) in etcd["message"]


def test_a_member_no_machine_backs_is_removed_with_an_event(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.etcd = etcd_status(["a", "b", "c", "gone"], unhealthy=["gone"])
    result = _reconciler(kube, tracker).reconcile(KEY)
    assert tracker.etcd_calls == [("remove_member", 4)]
    assert ("Normal", "EtcdMemberRemoved", "Removed etcd member gone, which no Machine backs") in (
        _events(kube)
    )
    etcd = _condition(kube, c.ETCD_CLUSTER_HEALTHY)
    assert etcd["status"] == c.FALSE
    assert "Etcd member gone does not have a corresponding Machine" in etcd["message"]
    assert result.requeue_after is not None and result.requeue_after <= 1.0


def test_a_member_no_machine_backs_is_kept_when_quorum_needs_it(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b"])
    tracker.etcd = etcd_status(["a", "b", "gone"], unhealthy=["b", "gone"])
    _reconciler(kube, tracker).reconcile(KEY)
    assert tracker.etcd_calls == []
    etcd = _condition(kube, c.ETCD_CLUSTER_HEALTHY)
    message = etcd["message"]
    assert "etcd member gone does not have a corresponding Machine and must be removed" in message
    assert any(r == "EtcdMemberRemovalBlocked" for _, r, _ in _events(kube))
    assert len(kube.of_kind("Machine")) == 2  # no scale up meanwhile


def test_scale_down_refuses_to_break_quorum(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.etcd = etcd_status(["a", "b", "c"], unhealthy=["c"])
    _reconciler(kube, tracker).reconcile(KEY)
    assert tracker.etcd_calls == []
    assert len(kube.of_kind("Machine")) == 3
    assert "is blocked because" in _condition(kube, c.SCALING_DOWN)["message"]


def test_version_change_rolls_out_with_surge(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=3, version="v1.35.0"))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    _reconciler(kube, tracker).reconcile(KEY)
    machines = kube.of_kind("Machine")
    assert len(machines) == 4
    new = next(m for m in machines if m["metadata"]["name"] not in ("a", "b", "c"))
    assert new["spec"]["version"] == "v1.35.0"
    rolling = _condition(kube, c.ROLLING_OUT)
    assert rolling["status"] == c.TRUE
    assert "Version v1.34.4, v1.35.0 required" in rolling["message"]


def test_deletion_deletes_machines_then_drops_finalizer_and_evicts(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    obj = kcp(replicas=1, finalizers=[labels.KUBEADM_CONTROL_PLANE_FINALIZER])
    obj["metadata"]["deletionTimestamp"] = ts(NOW)
    kube.put(obj)
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a"])
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    assert kube.of_kind("Machine") == []
    assert _condition(kube, c.DELETING)["status"] == c.TRUE
    reconciler.reconcile(KEY)
    assert kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp") is None
    assert [k.name for k in tracker.evicted] == ["c1"]


def test_repeated_events_are_counted_not_duplicated(kube: FakeKube) -> None:
    recorder = EventRecorder(kube, repeat_interval=0.0)  # type: ignore[arg-type]
    obj = kube.put(kcp())
    for _ in range(3):
        recorder.warning(obj, "Broken", "same message")
    events = kube.list(EVENT, "ns")
    assert len(events) == 1
    assert events[0]["count"] == 3
    assert events[0]["involvedObject"]["kind"] == "KubeadmControlPlane"


def _mark_unhealthy(kube: FakeKube, name: str) -> None:
    """What Cluster API's MachineHealthCheck writes on a control-plane Machine it found sick."""
    obj = kube.objects[("Machine", "ns", name)]
    obj["status"]["conditions"] += [
        condition(c.HEALTH_CHECK_SUCCEEDED, c.FALSE, "UnhealthyNode"),
        condition(c.OWNER_REMEDIATED, c.FALSE, "WaitingForRemediation"),
    ]
    obj["metadata"]["finalizers"] = ["machine.cluster.x-k8s.io"]
    kube.put(obj)


def test_remediation_deletes_the_marked_machine_and_marks_its_replacement(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3, spec={"remediation": {"maxRetry": 2}}))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.etcd = etcd_status(["a", "b", "c"], unhealthy=["a"], leader=2)
    _mark_unhealthy(kube, "a")
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    deleting = _machine(kube, "a")
    assert deleting is not None and deleting["metadata"].get("deletionTimestamp")
    owner = c.get_condition(deleting, c.OWNER_REMEDIATED)
    assert owner is not None and owner["reason"] == "MachineDeleting"
    in_progress = _kcp(kube)["metadata"]["annotations"][labels.REMEDIATION_IN_PROGRESS_ANNOTATION]
    assert '"machine":"a"' in in_progress and '"retryCount":0' in in_progress
    remediating = _condition(kube, c.REMEDIATING)
    assert remediating["status"] == c.TRUE
    assert remediating["message"] == "* Machine a: Machine is deleting"
    assert _kcp(kube)["status"]["lastRemediation"]["machine"] == "a"
    assert any(r == "MachineRemediation" for _, r, _ in _events(kube))
    # Core deletes it (its member went from the hook); the replacement says what it replaces.
    del kube.objects[("Machine", "ns", "a")]
    tracker.etcd = etcd_status(["b", "c"])
    reconciler.reconcile(KEY)
    created = [
        m for key, m in kube.objects.items() if key[0] == "Machine" and key[2] not in ("b", "c")
    ]
    assert len(created) == 1
    assert created[0]["metadata"]["annotations"][labels.REMEDIATION_FOR_ANNOTATION] == in_progress
    assert labels.REMEDIATION_IN_PROGRESS_ANNOTATION not in _kcp(kube)["metadata"]["annotations"]
    assert _kcp(kube)["status"]["lastRemediation"]["retryCount"] == 0
    assert _condition(kube, c.REMEDIATING)["status"] == c.FALSE


def test_remediation_that_would_cost_quorum_is_refused_and_said(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.etcd = etcd_status(["a", "b", "c"], unhealthy=["a", "b"], leader=3)
    _mark_unhealthy(kube, "a")
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    kept = _machine(kube, "a")
    assert kept is not None and not kept["metadata"].get("deletionTimestamp")
    owner = c.get_condition(kept, c.OWNER_REMEDIATED)
    assert owner is not None and owner["reason"] == "CannotBeRemediated"
    assert "quorum" in owner["message"]
    remediating = _condition(kube, c.REMEDIATING)
    assert remediating["status"] == c.TRUE and "quorum" in remediating["message"]
    blocked = [m for _, r, m in _events(kube) if r == "RemediationBlocked"]
    assert blocked and "not healthy: b" in blocked[0]
    # Healthy again (the health check passes): KCP's refusal goes from the Machine.
    obj = kube.objects[("Machine", "ns", "a")]
    for x in obj["status"]["conditions"]:
        if x["type"] == c.HEALTH_CHECK_SUCCEEDED:
            x["status"] = c.TRUE
    kube.put(obj)
    tracker.etcd = etcd_status(["a", "b", "c"])
    reconciler.reconcile(KEY)
    recovered = _machine(kube, "a")
    assert recovered is not None and c.get_condition(recovered, c.OWNER_REMEDIATED) is None
    assert _condition(kube, c.REMEDIATING)["status"] == c.FALSE


class _LaggingCache(FakeCache):
    """A cache whose KubeadmControlPlane is the copy taken before the last reconcile wrote."""

    def __init__(self, kube: FakeKube) -> None:
        super().__init__(kube)
        self.frozen: dict[str, Any] | None = None

    def kubeadm_control_plane(self, namespace: str, name: str) -> Any:
        return (
            self.frozen
            if self.frozen is not None
            else super().kubeadm_control_plane(namespace, name)
        )


def test_a_reconcile_before_the_cache_shows_our_status_write_does_not_write_it_again(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    cache = _LaggingCache(kube)
    reconciler = _reconciler(kube, tracker)
    reconciler.cache = cache
    reconciler.inspection.cache = cache
    reconciler.reconcile(KEY)
    assert _condition(kube, c.ETCD_CLUSTER_HEALTHY)["status"] == c.TRUE
    cache.frozen = copy.deepcopy(_kcp(kube))  # from now on the cache shows no more writes
    tracker.etcd = etcd_status(["a", "b", "c"], unhealthy=["c"])
    reconciler.reconcile(KEY)
    assert _condition(kube, c.ETCD_CLUSTER_HEALTHY)["status"] == c.FALSE
    kube.calls.clear()
    reconciler.reconcile(KEY)  # nothing changed, but the cache is one status write behind
    kcp_calls = [call for call in kube.calls if call[1] == "KubeadmControlPlane"]
    assert kcp_calls == []  # no patch that fails on the old resourceVersion, no live read


def test_secrets_kcp_created_are_not_read_back(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    reconciler = _reconciler(kube, tracker)
    reconciler.reconcile(KEY)
    kube.calls.clear()
    reconciler.reconcile(KEY)
    assert [call for call in kube.calls if call[:2] == ("get", "Secret")] == []


def test_repeats_soon_after_a_write_are_counted_and_written_with_the_next(kube: FakeKube) -> None:
    now = [0.0]
    recorder = EventRecorder(kube, repeat_interval=15.0, clock=lambda: now[0])  # type: ignore[arg-type]
    obj = kube.put(kcp())
    recorder.warning(obj, "ControlPlaneUnhealthy", "waiting")
    for _ in range(2):
        now[0] += 5.0
        recorder.warning(obj, "ControlPlaneUnhealthy", "waiting")
    assert [call[0] for call in kube.calls if call[1] == "Event"] == ["create"]
    now[0] += 10.0
    recorder.warning(obj, "ControlPlaneUnhealthy", "waiting")
    events = kube.list(EVENT, "ns")
    assert len(events) == 1
    assert events[0]["count"] == 4  # the two held back went out with this one
    assert [call[0] for call in kube.calls if call[1] == "Event"] == ["create", "patch"]
    recorder.warning(obj, "ControlPlaneUnhealthy", "something else")  # another Event: at once
    assert len(kube.list(EVENT, "ns")) == 2


def test_a_status_write_starts_from_the_cache_copy_of_the_spec_it_reconciled(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    from kcp.api.objects import KubeadmControlPlaneView

    kube.put(kcp(replicas=3))
    reconciler = _reconciler(kube, tracker)
    started = KubeadmControlPlaneView(copy.deepcopy(_kcp(kube)))
    # Our previous status write reached the cache while this reconcile ran: start from it.
    newer = kube.merge_patch(
        KUBEADM_CONTROL_PLANE, "ns", "cp", {"status": {"replicas": 3}}, subresource="status"
    )
    assert reconciler._status_base(started) == newer
    # The spec changed meanwhile: what was reconciled is the older one; its write fails and
    # is redone, as any write on a stale object.
    obj = _kcp(kube)
    obj["spec"]["replicas"] = 5
    obj["metadata"]["generation"] += 1
    kube.put(obj)
    assert reconciler._status_base(started) == started.raw


def test_keys_kcp_generated_are_not_checked_again_but_anyone_elses_are(
    kube: FakeKube, tracker: FakeTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kcp.certs.pem as pem

    loads = pem.serialization.load_pem_private_key
    skipped: list[bool] = []

    def load(data: bytes, password: Any, *, unsafe_skip_rsa_key_validation: bool = False) -> Any:
        skipped.append(unsafe_skip_rsa_key_validation)
        return loads(data, password, unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation)

    monkeypatch.setattr(pem.serialization, "load_pem_private_key", load)
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    _reconciler(kube, tracker).reconcile(KEY)
    created = len(skipped)
    assert created >= 4 and all(skipped), skipped  # ca, etcd, proxy, sa: our own writes
    key_pair_from_secret_data(_secret_data(kube, "c1-ca"), secret_name="ns/c1-ca")
    assert skipped[created:] == [False]  # a Secret read back is checked in full
