"""The reconciler's steps inside the workload cluster on upgrades, and refused version changes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kcp.api import conditions as c
from kcp.api import labels
from kcp.controlplane.upgrade import CLUSTER_ROLE_BINDING, DAEMON_SET, DEPLOYMENT
from tests.unit.controlplane import test_reconciler as base
from tests.unit.controlplane.builders import cluster, kcp
from tests.unit.controlplane.fakes import FakeKube, FakeTracker

PROXY_IMAGE = "registry.k8s.io/kube-proxy:v1.34.3"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.12.1"


@pytest.fixture
def kube() -> FakeKube:
    api = FakeKube()
    api.put(
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "LocalMachineTemplate",
            "metadata": {"name": "tmpl", "namespace": "ns"},
            "spec": {"template": {"spec": {}}},
        }
    )
    return api


@pytest.fixture
def tracker() -> FakeTracker:
    return FakeTracker()


def _cluster_configuration(tracker: FakeTracker) -> dict[str, Any]:
    config_map = tracker.workload.objects[("ConfigMap", "kube-system", "kubeadm-config")]
    loaded = yaml.safe_load(config_map["data"]["ClusterConfiguration"])
    assert isinstance(loaded, dict)
    return loaded


def _with_addons(tracker: FakeTracker) -> None:
    """kube-proxy and CoreDNS as kubeadm installs them (kube-proxy one patch behind)."""

    def workload(kind: str, name: str, image: str, **pod: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}], **pod}}},
        }

    tracker.workload.put(workload("DaemonSet", "kube-proxy", PROXY_IMAGE))
    volume = {
        "name": "config-volume",
        "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]},
    }
    tracker.workload.put(workload("Deployment", "coredns", COREDNS_IMAGE, volumes=[volume]))
    tracker.workload.put(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": ".:53 {\n    errors\n}\n"},
        }
    )


def _image(tracker: FakeTracker, kind: str, name: str) -> str:
    obj = tracker.workload.objects[(kind, "kube-system", name)]
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def _settled(kube: FakeKube, tracker: FakeTracker, **kcp_args: Any) -> None:
    kube.put(kcp(replicas=1, **kcp_args))
    kube.put(cluster())
    base._running_control_plane(kube, tracker, ["a"])
    _with_addons(tracker)


def _dns_spec(tag: str) -> dict[str, Any]:
    spec = copy.deepcopy(kcp()["spec"]["kubeadmConfigSpec"])
    spec["clusterConfiguration"]["dns"] = {"imageTag": tag}
    return {"kubeadmConfigSpec": spec}


# -- before a rollout step -----------------------------------------------------------------


def test_a_rollout_updates_kubeadm_config_and_rbac_before_the_new_machine(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3, version="v1.35.0"))
    kube.put(cluster())
    base._running_control_plane(kube, tracker, ["a", "b", "c"])
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert len(kube.of_kind("Machine")) == 4
    uploaded = _cluster_configuration(tracker)
    assert uploaded["kubernetesVersion"] == "v1.35.0"
    assert uploaded["apiServer"] == {"certSANs": ["localhost"]}
    assert uploaded["featureGates"] == {"ControlPlaneKubeletLocalMode": True}
    bindings = {o["metadata"]["name"]: o for o in tracker.workload.of_kind("ClusterRoleBinding")}
    assert bindings["kubeadm:apiserver-kubelet-client"]["subjects"][0]["name"] == (
        "kube-apiserver-kubelet-client"
    )
    assert bindings["kubeadm:cluster-admins"]["roleRef"]["name"] == "cluster-admin"
    order = [call for call in tracker.workload.calls if call[0] in ("patch", "create")]
    assert ("patch", "ConfigMap", "kubeadm-config") in order
    assert any(e[1] == "KubeadmConfigUpdated" and "v1.35.0" in e[2] for e in base._events(kube))
    # Nothing to write the second time: the ConfigMap is read, not patched again.
    tracker.workload.calls.clear()
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert ("patch", "ConfigMap", "kubeadm-config") not in tracker.workload.calls


def test_an_unreadable_kubeadm_config_blocks_the_rollout(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3, version="v1.35.0"))
    kube.put(cluster())
    base._running_control_plane(kube, tracker, ["a", "b", "c"])
    tracker.workload.objects[("ConfigMap", "kube-system", "kubeadm-config")]["data"] = {}
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert len(kube.of_kind("Machine")) == 3
    rolling = base._condition(kube, c.ROLLING_OUT)
    assert rolling["status"] == c.TRUE
    assert rolling["message"].startswith("Rolling out 3 not up-to-date replicas is blocked")
    assert "kube-system/kubeadm-config in the workload cluster ns/c1" in rolling["message"]
    assert "upload-config" in rolling["message"]
    assert any(e[:2] == ("Warning", "FailedRollout") for e in base._events(kube))


def test_a_version_skipping_a_minor_rolls_nothing_out(kube: FakeKube, tracker: FakeTracker) -> None:
    kube.put(kcp(replicas=3, version="v1.36.0"))
    kube.put(cluster())
    base._running_control_plane(kube, tracker, ["a", "b", "c"])
    result = base._reconciler(kube, tracker).reconcile(base.KEY)
    assert len(kube.of_kind("Machine")) == 3
    assert _cluster_configuration(tracker)["kubernetesVersion"] == "v1.34.4"
    rolling = base._condition(kube, c.ROLLING_OUT)
    assert (rolling["status"], rolling["reason"]) == (c.UNKNOWN, "InvalidSpec")
    assert "skips a minor version" in rolling["message"]
    assert "any v1.35 release (e.g. v1.35.0)" in rolling["message"]
    assert base._condition(kube, c.SCALING_UP)["reason"] == "InvalidSpec"
    warnings = [e for e in base._events(kube) if e[:2] == ("Warning", "InvalidSpec")]
    assert warnings and "allowed versions" in warnings[0][2]
    assert result.requeue_after is not None and result.requeue_after >= 5.0  # backed off


# -- once settled ---------------------------------------------------------------------------


def test_a_settled_control_plane_updates_kube_proxy_and_coredns(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    _settled(kube, tracker, spec=_dns_spec("v1.12.2"))
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert _image(tracker, "DaemonSet", "kube-proxy") == "registry.k8s.io/kube-proxy:v1.34.4"
    assert _image(tracker, "Deployment", "coredns") == "registry.k8s.io/coredns/coredns:v1.12.2"
    uploaded = _cluster_configuration(tracker)
    assert uploaded["dns"] == {"imageTag": "v1.12.2"}
    corefile = tracker.workload.objects[("ConfigMap", "kube-system", "coredns")]["data"]
    assert corefile == {"Corefile": ".:53 {\n    errors\n}\n"}  # left as it is
    reasons = {e[1] for e in base._events(kube)}
    assert {"KubeProxyUpdated", "CoreDNSUpdated"} <= reasons


def test_settled_add_ons_are_not_read_again_until_the_kcp_changes(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    _settled(kube, tracker)
    reconciler = base._reconciler(kube, tracker)
    reconciler.reconcile(base.KEY)
    tracker.workload.calls.clear()
    reconciler.reconcile(base.KEY)
    assert ("get", DAEMON_SET.kind, "kube-proxy") not in tracker.workload.calls
    obj = kube.objects[("KubeadmControlPlane", "ns", "cp")]
    obj["metadata"]["annotations"] = {labels.SKIP_COREDNS_ANNOTATION: ""}
    kube.put(obj)
    reconciler.reconcile(base.KEY)
    assert ("get", DAEMON_SET.kind, "kube-proxy") in tracker.workload.calls


def test_skip_annotations_leave_kube_proxy_and_coredns_alone(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    skip = {labels.SKIP_COREDNS_ANNOTATION: "", labels.SKIP_KUBE_PROXY_ANNOTATION: ""}
    _settled(kube, tracker, spec=_dns_spec("v1.12.2"), annotations=skip)
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert _image(tracker, "DaemonSet", "kube-proxy") == PROXY_IMAGE
    assert _image(tracker, "Deployment", "coredns") == COREDNS_IMAGE
    assert "dns" not in _cluster_configuration(tracker)
    assert not {"KubeProxyUpdated", "CoreDNSUpdated"} & {e[1] for e in base._events(kube)}


def test_a_coredns_downgrade_is_refused_with_what_to_set(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    _settled(kube, tracker, spec=_dns_spec("v1.11.3"))
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert _image(tracker, "Deployment", "coredns") == COREDNS_IMAGE
    failed = [e for e in base._events(kube) if e[1] == "FailedAddonUpdate"]
    assert failed and "set v1.12.1 or later" in failed[0][2]


def test_missing_add_ons_are_not_an_error(kube: FakeKube, tracker: FakeTracker) -> None:
    _settled(kube, tracker, spec=_dns_spec("v1.12.2"))
    for key in [k for k in tracker.workload.objects if k[0] in (DEPLOYMENT.kind, DAEMON_SET.kind)]:
        del tracker.workload.objects[key]
    base._reconciler(kube, tracker).reconcile(base.KEY)
    assert not [e for e in base._events(kube) if e[0] == "Warning"]
    assert tracker.workload.of_kind(CLUSTER_ROLE_BINDING.kind) == []  # only on rollouts
