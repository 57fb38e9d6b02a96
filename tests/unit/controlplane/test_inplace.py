"""Template metadata, timeouts, taints and readiness gates reach existing Machines in place."""

from __future__ import annotations

import copy
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.groups import KUBEADM_CONFIG, LOCAL_MACHINE, MACHINE
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView
from kcp.controlplane.inplace import (
    contains,
    deleting_machine_patch,
    machine_apply_config,
)
from kcp.controlplane.machines import MANDATORY_READINESS_GATES
from kcp.controlplane.managed_fields import (
    MACHINE_IN_PLACE_FIELDS,
    release_fields,
    without_fields,
)
from kcp.controlplane.rollout import machine_up_to_date
from kcp.controlplane.scope import Scope
from kcp.rest import ApiError, Resource
from tests.unit.controlplane.builders import NOW, cluster, kcp, machine
from tests.unit.controlplane.fakes import FakeKube, FakeTracker, reconciler_on
from tests.unit.controlplane.test_reconciler import KEY, _running_control_plane

NS = "ns"
GATE = {"conditionType": "example.com/Approved"}


def _template(
    *,
    labels_: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    deletion: dict[str, int] | None = None,
    gates: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"labels": labels_ or {}, "annotations": annotations or {}},
        "spec": {
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "LocalMachineTemplate",
                "name": "tmpl",
            }
        },
    }
    if deletion:
        template["spec"]["deletion"] = deletion
    if gates:
        template["spec"]["readinessGates"] = gates
    return template


def _owned(kind: str, api_version: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {**labels.control_plane_machine_labels("cp", "c1"), "from-template": "x"},
            "annotations": {"kept": "by-someone-else"},
        },
        "spec": {"untouched": True},
    }


def _fleet(names: tuple[str, ...] = ("a", "b", "c"), **template: Any) -> FakeKube:
    kube = FakeKube()
    kube.put(kcp(spec={"machineTemplate": _template(**template)}))
    kube.put(cluster())
    for name in names:
        kube.put(machine(name))
        kube.put(_owned("KubeadmConfig", "bootstrap.cluster.x-k8s.io/v1beta2", name))
        kube.put(_owned("LocalMachine", "infrastructure.cluster.x-k8s.io/v1beta2", name))
    return kube


def _scope(kube: FakeKube) -> Scope:
    [obj] = kube.of_kind("KubeadmControlPlane")
    machines = [MachineView(m) for m in kube.of_kind("Machine")]
    return Scope(
        kcp=obj, cluster=ClusterView(cluster()), machines=machines, now=NOW, initialized=True
    )


def _set_template(kube: FakeKube, **template: Any) -> None:
    [obj] = kube.of_kind("KubeadmControlPlane")
    obj["spec"]["machineTemplate"] = _template(**template)
    kube.put(obj)


def _applies(kube: FakeKube) -> list[tuple[str, str]]:
    return [(kind, name) for verb, kind, name in kube.calls if verb == "apply"]


def _get(kube: FakeKube, resource: Resource, name: str) -> dict[str, Any]:
    found = kube.get(resource, NS, name)
    assert found is not None
    return found


# -- what is applied ---------------------------------------------------------------------


def test_the_machine_gets_template_metadata_timeouts_and_gates_with_the_kcp_labels_forced() -> None:
    view = KubeadmControlPlaneView(
        kcp(
            spec={
                "machineTemplate": _template(
                    labels_={"env": "prod", labels.CLUSTER_NAME_LABEL: "spoofed"},
                    annotations={"team": "a"},
                    deletion={"nodeDrainTimeoutSeconds": 30},
                    gates=[GATE],
                )
            }
        )
    )
    config = machine_apply_config(view, "c1", MachineView(machine("a")))
    metadata = config["metadata"]
    assert metadata["uid"] == "uid-a"  # an apply never re-creates a deleted Machine
    assert metadata["labels"] == {
        "env": "prod",
        labels.CLUSTER_NAME_LABEL: "c1",
        labels.MACHINE_CONTROL_PLANE_LABEL: "",
        labels.MACHINE_CONTROL_PLANE_NAME_LABEL: "cp",
    }
    # The template it was cloned from is what a rollout compares: not kcp's to rewrite.
    assert metadata["annotations"] == {"team": "a"}
    assert config["spec"]["deletion"] == {"nodeDrainTimeoutSeconds": 30}
    gates = [g["conditionType"] for g in config["spec"]["readinessGates"]]
    assert gates == [GATE["conditionType"], *MANDATORY_READINESS_GATES]
    assert set(config["spec"]) == {"deletion", "readinessGates"}  # nothing else of the spec


def test_a_metadata_or_timeout_change_does_not_make_a_machine_out_of_date() -> None:
    view = KubeadmControlPlaneView(
        kcp(
            spec={
                "machineTemplate": _template(
                    labels_={"new": "label"},
                    annotations={"new": "annotation"},
                    deletion={"nodeDeletionTimeoutSeconds": 5},
                    gates=[GATE],
                )
            }
        )
    )
    result = machine_up_to_date(
        view, MachineView(machine("a")), kubeadm_config_spec=None, infra_cloned_from=None, now=NOW
    )
    assert result.up_to_date, result.reasons


def test_contains_tells_whether_an_apply_would_change_anything() -> None:
    current = {
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "spec": {"g": [{"t": "x"}, {"t": "y"}]},
    }
    assert contains(current, {"metadata": {"labels": {"a": "1"}}, "spec": {"g": [{"t": "y"}]}})
    assert not contains(current, {"metadata": {"labels": {"a": "2"}}})
    assert not contains(current, {"spec": {"g": [{"t": "z"}]}})
    assert not contains(current, {"metadata": {"annotations": {"a": "1"}}})
    # The API server keeps no empty map: no annotations to apply are no annotations at all.
    assert contains(current, {"metadata": {"labels": {"a": "1"}, "annotations": {}}})


def test_an_object_others_keep_changing_is_not_applied_again() -> None:
    kube = _fleet(names=("a",))
    for kind in ("KubeadmConfig", "LocalMachine"):
        del kube.objects[(kind, NS, "a")]["metadata"]["annotations"]
    reconciler = reconciler_on(kube)
    reconciler.in_place.sync(_scope(kube))
    for _ in range(3):  # e.g. CABPK and core writing into the KubeadmConfig while it boots
        obj = _get(kube, KUBEADM_CONFIG, "a")
        obj["spec"]["written"] = obj["metadata"]["resourceVersion"]
        kube.put(obj)
        kube.calls.clear()
        reconciler.in_place.sync(_scope(kube))
        assert _applies(kube) == []


# -- propagation -------------------------------------------------------------------------


def test_a_new_template_label_reaches_machines_configs_and_infra_machines_once() -> None:
    kube = _fleet()
    reconciler = reconciler_on(kube)
    reconciler.in_place.sync(_scope(kube))  # kcp claims what it applies (once, as after a start)
    kube.calls.clear()
    reconciler.in_place.sync(_scope(kube))
    assert _applies(kube) == [], "nothing changed: nothing is written"

    _set_template(kube, labels_={"in-place": "yes"}, annotations={"note": "hello"})
    scope = _scope(kube)
    reconciler.in_place.sync(scope)
    for resource in (MACHINE, KUBEADM_CONFIG, LOCAL_MACHINE):
        for name in ("a", "b", "c"):
            obj = _get(kube, resource, name)
            assert obj["metadata"]["labels"]["in-place"] == "yes", (resource.kind, name)
            assert obj["metadata"]["annotations"]["note"] == "hello", (resource.kind, name)
    assert len(_applies(kube)) == 9
    assert not [call for call in kube.calls if call[0] in ("create", "delete")]
    # What the reconcile goes on with is what was written.
    assert all(m.labels.get("in-place") == "yes" for m in scope.machines)
    # Others' annotations and the spec are left alone; the Machine keeps its origin.
    config = _get(kube, KUBEADM_CONFIG, "a")
    assert config["metadata"]["annotations"]["kept"] == "by-someone-else"
    assert config["spec"] == {"untouched": True}
    annotations = _get(kube, MACHINE, "a")["metadata"]["annotations"]
    assert annotations[labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION] == "tmpl"

    kube.calls.clear()
    reconciler.in_place.sync(_scope(kube))
    assert _applies(kube) == []


def test_a_label_removed_from_the_template_is_removed_in_place() -> None:
    kube = _fleet(labels_={"old": "1"})
    reconciler = reconciler_on(kube)
    reconciler.in_place.sync(_scope(kube))
    _set_template(kube, labels_={"new": "2"})
    reconciler.in_place.sync(_scope(kube))
    for resource in (MACHINE, KUBEADM_CONFIG, LOCAL_MACHINE):
        got = _get(kube, resource, "a")["metadata"]["labels"]
        assert "old" not in got and got["new"] == "2", resource.kind
        assert got[labels.CLUSTER_NAME_LABEL] == "c1"


def test_timeouts_and_readiness_gates_reach_existing_machines() -> None:
    kube = _fleet()
    reconciler = reconciler_on(kube)
    _set_template(
        kube,
        deletion={"nodeDrainTimeoutSeconds": 60, "nodeVolumeDetachTimeoutSeconds": 30},
        gates=[GATE],
    )
    reconciler.in_place.sync(_scope(kube))
    spec = _get(kube, MACHINE, "b")["spec"]
    assert spec["deletion"] == {"nodeDrainTimeoutSeconds": 60, "nodeVolumeDetachTimeoutSeconds": 30}
    assert GATE in spec["readinessGates"]
    assert spec["bootstrap"]["configRef"]["name"] == "b"  # the rest of the spec stays


def test_a_machine_that_lost_a_label_gets_it_back() -> None:
    kube = _fleet(labels_={"env": "prod"})
    reconciler = reconciler_on(kube)
    reconciler.in_place.sync(_scope(kube))
    obj = _get(kube, MACHINE, "a")
    del obj["metadata"]["labels"]["env"]
    kube.put(obj)
    kube.calls.clear()
    reconciler.in_place.sync(_scope(kube))
    assert _applies(kube) == [("Machine", "a")]
    assert _get(kube, MACHINE, "a")["metadata"]["labels"]["env"] == "prod"


def test_a_deleting_machine_gets_only_its_timeouts() -> None:
    kube = _fleet(names=("a",))
    gone = machine("a", deleting=True)
    gone["metadata"]["finalizers"] = ["machine.cluster.x-k8s.io"]
    kube.put(gone)
    _set_template(kube, labels_={"late": "label"}, deletion={"nodeDrainTimeoutSeconds": 10})
    reconciler_on(kube).in_place.sync(_scope(kube))
    obj = _get(kube, MACHINE, "a")
    assert obj["spec"]["deletion"] == {"nodeDrainTimeoutSeconds": 10}
    assert "late" not in obj["metadata"]["labels"]
    assert _applies(kube) == []
    assert "late" not in _get(kube, KUBEADM_CONFIG, "a")["metadata"]["labels"]


def test_deleting_machine_patch_clears_timeouts_the_template_dropped() -> None:
    view = KubeadmControlPlaneView(kcp())
    deleting = machine("a", deleting=True)
    deleting["spec"]["deletion"] = {"nodeDrainTimeoutSeconds": 10}
    patch = deleting_machine_patch(view, MachineView(deleting))
    assert patch == {"spec": {"deletion": {"nodeDrainTimeoutSeconds": None}}}
    assert deleting_machine_patch(view, MachineView(machine("b", deleting=True))) == {}


def test_missing_or_vanishing_objects_are_skipped_and_retried() -> None:
    kube = _fleet(names=("a", "b"))
    del kube.objects[("LocalMachine", NS, "a")]
    del kube.objects[("KubeadmConfig", NS, "b")]
    reconciler = reconciler_on(kube)
    _set_template(kube, labels_={"x": "y"})
    reconciler.in_place.sync(_scope(kube))
    assert _get(kube, MACHINE, "a")["metadata"]["labels"]["x"] == "y"
    assert _get(kube, LOCAL_MACHINE, "b")["metadata"]["labels"]["x"] == "y"

    class Vanishing(FakeKube):
        def apply(self, resource: Resource, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ApiError(404, "NotFound", "gone")

    vanishing = Vanishing()
    vanishing.objects = copy.deepcopy(kube.objects)
    _set_template(vanishing, labels_={"x": "z"})
    scope = _scope(vanishing)
    reconciler_on(vanishing).in_place.sync(scope)  # no exception, no event
    assert not vanishing.of_kind("Event")
    assert scope.requeue is None


def test_a_failed_apply_is_an_event_and_a_requeue_not_an_exception() -> None:
    class Refusing(FakeKube):
        def apply(self, resource: Resource, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ApiError(422, "Invalid", "metadata.labels: Invalid value")

    kube = Refusing()
    kube.objects = copy.deepcopy(_fleet(names=("a",)).objects)
    _set_template(kube, labels_={"x": "y"})
    scope = _scope(kube)
    reconciler_on(kube).in_place.sync(scope)
    reasons = {e["reason"] for e in kube.of_kind("Event")}
    assert reasons == {"FailedInPlaceUpdate"}
    assert scope.requeue is not None


def test_a_reconcile_of_a_healthy_control_plane_propagates_with_no_rollout() -> None:
    kube = FakeKube()
    kube.put(
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "LocalMachineTemplate",
            "metadata": {"name": "tmpl", "namespace": NS},
            "spec": {"template": {"spec": {}}},
        }
    )
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    tracker = FakeTracker()
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    reconciler = reconciler_on(kube, tracker)
    reconciler.reconcile(KEY)
    _set_template(kube, labels_={"in-place": "yes"}, deletion={"nodeDrainTimeoutSeconds": 9})
    kube.calls.clear()
    reconciler.reconcile(KEY)
    machines = kube.of_kind("Machine")
    assert {m["metadata"]["name"] for m in machines} == {"a", "b", "c"}
    assert all(m["metadata"]["labels"]["in-place"] == "yes" for m in machines)
    assert all(m["spec"]["deletion"] == {"nodeDrainTimeoutSeconds": 9} for m in machines)
    assert not [call for call in kube.calls if call[0] in ("create", "delete")]
    [obj] = kube.of_kind("KubeadmControlPlane")
    assert obj["status"]["upToDateReplicas"] == 3
    assert c.get_condition(obj, c.ROLLING_OUT)["status"] == c.FALSE  # type: ignore[index]


# -- handing the create's claim over -----------------------------------------------------

MANAGED = [
    {
        "manager": "kcp-test",
        "operation": "Update",
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:env": {}}, "f:annotations": {"f:a": {}}, "f:name": {}},
            "f:spec": {"f:deletion": {}, "f:version": {}, "f:readinessGates": {}},
        },
    },
    {
        "manager": "kcp-test",
        "operation": "Update",
        "subresource": "status",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {}}},
    },
    {
        "manager": "someone-else",
        "operation": "Update",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:theirs": {}}}},
    },
]


def test_without_fields_drops_only_kcps_create_claim_on_the_in_place_fields() -> None:
    result = without_fields(MANAGED, "kcp-test", MACHINE_IN_PLACE_FIELDS)
    assert result is not None
    assert result[0]["fieldsV1"] == {
        "f:metadata": {"f:name": {}},
        "f:spec": {"f:version": {}},
    }
    assert result[1:] == MANAGED[1:]
    assert without_fields(result, "kcp-test", MACHINE_IN_PLACE_FIELDS) is None


def test_release_fields_retries_a_conflict_with_a_fresh_read() -> None:
    kube = FakeKube()
    created = kube.put(machine("a"))
    created["metadata"]["managedFields"] = copy.deepcopy(MANAGED)
    stored = copy.deepcopy(created)
    stored["metadata"]["resourceVersion"] = "newer"  # someone wrote meanwhile
    kube.objects[("Machine", NS, "a")] = stored
    release_fields(kube, MACHINE, created, MACHINE_IN_PLACE_FIELDS)  # type: ignore[arg-type]
    assert [verb for verb, _, _ in kube.calls] == ["patch", "get", "patch"]
    fields = _get(kube, MACHINE, "a")["metadata"]["managedFields"][0]["fieldsV1"]
    assert "f:labels" not in fields["f:metadata"] and "f:deletion" not in fields["f:spec"]


def test_creating_a_machine_hands_the_in_place_fields_over() -> None:
    class Recording(FakeKube):
        def create(self, resource: Resource, namespace: str | None, obj: Any) -> Any:
            created = super().create(resource, namespace, obj)
            created["metadata"]["managedFields"] = copy.deepcopy(MANAGED)
            self.objects[(resource.kind, namespace or "", obj["metadata"]["name"])] = copy.deepcopy(
                created
            )
            return created

    kube = Recording()
    kube.put(
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "LocalMachineTemplate",
            "metadata": {"name": "tmpl", "namespace": NS},
            "spec": {"template": {"spec": {}}},
        }
    )
    from kcp.controlplane.machines import create_machine

    created = create_machine(
        kube,  # type: ignore[arg-type]
        KubeadmControlPlaneView(kcp()),
        ClusterView(cluster()),
        init=True,
        failure_domain=None,
    )
    for kind in ("LocalMachine", "KubeadmConfig", "Machine"):
        fields = kube.objects[(kind, NS, created.name)]["metadata"]["managedFields"][0]
        assert "f:labels" not in fields["fieldsV1"]["f:metadata"], kind
    assert (
        "f:deletion"
        not in kube.objects[("Machine", NS, created.name)]["metadata"]["managedFields"][0][
            "fieldsV1"
        ]["f:spec"]
    )
    assert (
        "f:deletion"
        in kube.objects[("KubeadmConfig", NS, created.name)]["metadata"]["managedFields"][0][
            "fieldsV1"
        ]["f:spec"]
    ), "only a Machine's spec fields are kept in place"


def test_an_infra_machine_is_read_once_then_applied_to_by_its_uid() -> None:
    kube = _fleet(names=("a",))
    reconciler = reconciler_on(kube)
    reconciler.in_place.sync(_scope(kube))
    assert ("get", "LocalMachine", "a") in kube.calls  # the first time: its UID is not known
    _set_template(kube, labels_={"in-place": "yes"})
    kube.calls.clear()
    reconciler.in_place.sync(_scope(kube))
    assert ("get", "LocalMachine", "a") not in kube.calls
    assert _get(kube, LOCAL_MACHINE, "a")["metadata"]["labels"]["in-place"] == "yes"
    # Re-created under the same name: the apply fails on the old UID, the next sync reads again.
    recreated = copy.deepcopy(_get(kube, LOCAL_MACHINE, "a"))
    recreated["metadata"]["uid"] = "another"
    kube.objects[("LocalMachine", NS, "a")] = recreated
    _set_template(kube, labels_={"in-place": "again"})
    reconciler.in_place.sync(_scope(kube))
    assert _get(kube, LOCAL_MACHINE, "a")["metadata"]["labels"]["in-place"] == "yes"
    kube.calls.clear()
    reconciler.in_place.sync(_scope(kube))
    assert ("get", "LocalMachine", "a") in kube.calls
    assert _get(kube, LOCAL_MACHINE, "a")["metadata"]["labels"]["in-place"] == "again"
