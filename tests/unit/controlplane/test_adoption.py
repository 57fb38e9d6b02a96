"""Adoption of a cluster's unowned control-plane Machines, and the refusals, as Cluster API's
KCP adopts them."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.groups import KUBEADM_CONTROL_PLANE, MACHINE, SECRET
from kcp.api.objects import KubeadmControlPlaneView, MachineView
from kcp.certs import key_pair_to_secret_data, new_certificate_authority
from kcp.controlplane.adoption import (
    ADOPTION_FAILED_REASON,
    adoption_candidates,
    adoption_refusal,
    foreign_controllers,
    secret_owners_after_adoption,
)
from kcp.controlplane.managed_fields import (
    CLUSTER_API_KCP_MANAGERS,
    MACHINE_IN_PLACE_FIELDS,
    METADATA_FIELDS,
    without_fields,
)
from kcp.runtime.controller import ObjectKey
from tests.unit.controlplane.builders import KCP_UID, NOW, cluster, kcp, machine
from tests.unit.controlplane.fakes import (
    FakeCache,
    FakeKube,
    FakeTracker,
    etcd_status,
    reconciler_on,
)
from tests.unit.controlplane.test_reconciler import _running_control_plane

KEY = ObjectKey("ns", "cp")


def _orphan(name: str, **kwargs: Any) -> dict[str, Any]:
    """A control-plane Machine of cluster c1 that no controller owns."""
    obj = machine(name, **kwargs)
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster", "name": "c1", "uid": "c"}
    ]
    return obj


def _config(name: str, *, data_secret: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
        "kind": "KubeadmConfig",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"config-uid-{name}",
            "labels": labels.control_plane_machine_labels("cp", "c1"),
        },
        "spec": {},
        "status": {"dataSecretName": data_secret} if data_secret else {},
    }


def _secret(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    metadata = owner["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "cluster.x-k8s.io/secret",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {labels.CLUSTER_NAME_LABEL: "c1"},
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                }
            ],
        },
        "data": {},
    }


def _events(kube: FakeKube) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in kube.of_kind("Event")]


def _controller_uid(obj: dict[str, Any] | None) -> str | None:
    assert obj is not None
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


# -- what is adopted, what is refused (pure) ---------------------------------------------


def test_candidates_are_the_clusters_control_plane_machines_no_controller_owns() -> None:
    other_cluster = _orphan("x", cluster_name="c2")
    worker = _orphan("w")
    del worker["metadata"]["labels"][labels.MACHINE_CONTROL_PLANE_LABEL]
    found = adoption_candidates("c1", [machine("owned"), _orphan("b"), _orphan("a"), worker])
    assert [m.name for m in found] == ["a", "b"]
    assert adoption_candidates("c1", [other_cluster]) == []


def test_a_machine_another_controller_owns_is_mixed_management() -> None:
    view = KubeadmControlPlaneView(kcp())
    assert foreign_controllers(view, "c1", [machine("a"), _orphan("b")]) == []
    [problem] = foreign_controllers(view, "c1", [machine("a", owner_uid="another-kcp")])
    assert "Machine ns/a" in problem and "controlled by KubeadmControlPlane cp" in problem


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("v1.34.0", False),
        ("v1.33.9", False),
        ("v1.35.1", False),
        ("", False),  # no version said: the user knows (Cluster API's rule)
        ("v1.32.5", True),
        ("v1.36.0", True),
        ("v2.34.4", True),
    ],
)
def test_a_version_more_than_one_minor_away_is_refused(version: str, refused: bool) -> None:
    obj = _orphan("a", version=version)
    if not version:
        del obj["spec"]["version"]
    problem = adoption_refusal(KubeadmControlPlaneView(kcp()), MachineView(obj))
    assert (problem is not None) is refused
    if problem:
        assert f"it runs {version}, more than one minor version away" in problem
        assert "spec.version v1.34.4" in problem


def test_a_machine_not_bootstrapped_by_a_kubeadm_config_is_refused() -> None:
    obj = _orphan("a")
    obj["spec"]["bootstrap"]["configRef"]["kind"] = "TalosConfig"
    problem = adoption_refusal(KubeadmControlPlaneView(kcp()), MachineView(obj))
    assert problem is not None
    assert "must name a KubeadmConfig (found a TalosConfig)" in problem
    del obj["spec"]["bootstrap"]["configRef"]
    problem = adoption_refusal(KubeadmControlPlaneView(kcp()), MachineView(obj))
    assert problem is not None and "(found none)" in problem


def test_the_configs_certificates_move_to_the_control_plane_not_its_bootstrap_data() -> None:
    config = _config("a", data_secret="a")
    owner = kcp()
    moved = secret_owners_after_adoption(_secret("c1-etcd", config), config, owner)
    assert moved is not None
    [ref] = moved
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("KubeadmControlPlane", KCP_UID, True)
    assert secret_owners_after_adoption(_secret("a", config), config, owner) is None
    assert secret_owners_after_adoption(_secret("c1-ca", owner), config, owner) is None
    assert secret_owners_after_adoption(_secret("c1-sa", _config("b")), config, owner) is None


def test_cluster_apis_claims_on_the_in_place_fields_are_dropped() -> None:
    """What Cluster API's KCP applied before a takeover: kcp's apply becomes the only owner."""
    managed = [
        {
            "manager": "capi-kubeadmcontrolplane",
            "operation": "Apply",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:env": {}}, "f:ownerReferences": {}},
                "f:spec": {"f:version": {}, "f:deletion": {}},
            },
        },
        {
            "manager": "capi-kubeadmcontrolplane-metadata",
            "operation": "Apply",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:env": {}}, "f:annotations": {}}},
        },
        {
            "manager": "manager",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:theirs": {}}}},
        },
    ]
    result = without_fields(
        managed, CLUSTER_API_KCP_MANAGERS, MACHINE_IN_PLACE_FIELDS, operations=("Apply",)
    )
    assert result is not None
    assert [e["manager"] for e in result] == ["capi-kubeadmcontrolplane", "manager"]
    assert result[0]["fieldsV1"] == {
        "f:metadata": {"f:ownerReferences": {}},
        "f:spec": {"f:version": {}},
    }
    assert result[1] == managed[2]
    assert without_fields(result, CLUSTER_API_KCP_MANAGERS, METADATA_FIELDS) is None


# -- through a reconcile -----------------------------------------------------------------


def test_an_unowned_machine_is_adopted_with_its_configs_certificates() -> None:
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    config = kube.put(_config("a", data_secret="a"))
    kube.put(_orphan("a"))
    kube.put(_secret("c1-etcd", config))
    kube.put(_secret("a", config))
    result = reconciler_on(kube).reconcile(KEY)
    assert result.requeue_after is not None
    adopted = kube.get(MACHINE, "ns", "a")
    assert _controller_uid(adopted) == KCP_UID
    assert adopted is not None and len(adopted["metadata"]["ownerReferences"]) == 2  # Cluster's too
    assert _controller_uid(kube.get(SECRET, "ns", "c1-etcd")) == KCP_UID
    assert _controller_uid(kube.get(SECRET, "ns", "a")) == "config-uid-a"  # bootstrap data
    assert [m["metadata"]["name"] for m in kube.of_kind("Machine")] == ["a"]  # nothing else
    assert ("Normal", "MachinesAdopted") in [(t, r) for t, r, _ in _events(kube)]


def test_a_machine_that_cannot_be_adopted_stops_scaling_and_says_why() -> None:
    kube = FakeKube()
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    kube.put(_config("a"))
    kube.put(_orphan("a", version="v1.31.0"))
    before = copy.deepcopy(kube.get(MACHINE, "ns", "a"))
    reconciler_on(kube).reconcile(KEY)
    assert kube.get(MACHINE, "ns", "a") == before  # not adopted
    assert [m["metadata"]["name"] for m in kube.of_kind("Machine")] == ["a"]  # none created
    obj = kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp")
    for kind in (c.SCALING_UP, c.SCALING_DOWN, c.ROLLING_OUT):
        found = c.get_condition(obj, kind)
        assert found is not None
        assert (found["status"], found["reason"]) == (c.UNKNOWN, ADOPTION_FAILED_REASON)
        assert "Machine ns/a cannot be adopted: it runs v1.31.0" in found["message"]
    warnings = [m for t, r, m in _events(kube) if r == ADOPTION_FAILED_REASON]
    assert warnings and "v1.31.0" in warnings[0]


def test_a_control_plane_being_deleted_adopts_nothing() -> None:
    """The live read sees the deletion the cache may not show yet."""
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    kube.put(_config("a"))
    kube.put(_orphan("a"))
    reconciler = reconciler_on(kube)
    cached = copy.deepcopy(kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp"))
    live = kube.objects[("KubeadmControlPlane", "ns", "cp")]
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    live["metadata"]["finalizers"] = [labels.KUBEADM_CONTROL_PLANE_FINALIZER]

    class Stale(FakeCache):
        def kubeadm_control_plane(self, namespace: str, name: str) -> Any:
            return cached

    reconciler.cache = reconciler.services.cache = reconciler.adoption.cache = Stale(kube)
    reconciler.reconcile(KEY)
    assert _controller_uid(kube.get(MACHINE, "ns", "a")) is None
    assert len(kube.of_kind("Machine")) == 1


def test_a_certificate_another_object_controls_becomes_the_control_planes() -> None:
    """Cluster API's rule for its own Secret type: the KubeadmControlPlane is the controller
    of the cluster's certificates, whoever generated them."""
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    config = kube.put(_config("a"))
    ca = new_certificate_authority("kubernetes", now=NOW)
    secret = _secret("c1-ca", config)
    secret["data"] = {
        k: base64.b64encode(v).decode() for k, v in key_pair_to_secret_data(ca).items()
    }
    kube.put(secret)
    reconciler_on(kube).reconcile(KEY)
    adopted = kube.get(SECRET, "ns", "c1-ca")
    assert _controller_uid(adopted) == KCP_UID
    assert adopted is not None and len(adopted["metadata"]["ownerReferences"]) == 1
    assert adopted["data"] == secret["data"]


def test_the_member_of_a_machine_that_cannot_be_adopted_is_kept() -> None:
    """The refused Machine's etcd member is backed by a Machine kcp does not own: kcp must
    not remove it as a member no Machine backs."""
    kube, tracker = FakeKube(), FakeTracker()
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    skewed = kube.get(MACHINE, "ns", "c")
    assert skewed is not None
    skewed["metadata"]["ownerReferences"] = []
    skewed["spec"]["version"] = "v1.32.0"
    kube.put(skewed)
    tracker.etcd = etcd_status(["a", "b", "c"])
    reconciler_on(kube, tracker).reconcile(KEY)
    assert tracker.etcd_calls == []
    assert len(kube.of_kind("Machine")) == 3
    scaling = c.get_condition(kube.get(KUBEADM_CONTROL_PLANE, "ns", "cp"), c.SCALING_UP)
    assert scaling is not None and scaling["reason"] == ADOPTION_FAILED_REASON
