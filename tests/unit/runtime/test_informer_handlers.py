"""Event handlers and the helpers that map changed objects to reconcile keys."""

from __future__ import annotations

from typing import Any

from kcp.runtime.controller import ObjectKey
from kcp.runtime.handlers import (
    callbacks,
    enqueue_by_label,
    enqueue_owner,
    enqueue_self,
    map_to,
    relevant_fields,
    safe_call,
    unless_unchanged,
)

KCP_GROUP = "controlplane.cluster.x-k8s.io"
CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"


def machine(
    name: str = "m1",
    *,
    owners: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "ownerReferences": owners or [],
            "labels": labels or {},
        },
    }


def ref(
    kind: str, name: str, api_version: str = f"{KCP_GROUP}/v1beta2", controller: bool = True
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": f"u-{name}",
        "controller": controller,
    }


def test_enqueue_self_binds_object_keys() -> None:
    seen: list[ObjectKey] = []
    enqueue_self().bind(seen.append)("ADDED", machine("m1"), None)
    assert seen == [ObjectKey("ns", "m1")]


def test_enqueue_self_for_cluster_scoped_objects() -> None:
    seen: list[ObjectKey] = []
    node = {"metadata": {"name": "node-1"}}
    enqueue_self().bind(seen.append)("DELETED", node, None)
    assert seen == [ObjectKey("", "node-1")]


def test_enqueue_owner_follows_the_controller_reference_of_that_kind_and_group() -> None:
    mapping = enqueue_owner("KubeadmControlPlane", KCP_GROUP)
    obj = machine(
        owners=[
            ref("KubeadmControlPlane", "kcp1", api_version=f"{KCP_GROUP}/v1beta1"),
            ref("KubeadmControlPlane", "other-group", api_version="example.com/v1"),
            ref("MachineSet", "ms1"),
            ref("KubeadmControlPlane", "not-controller", controller=False),
        ]
    )
    assert mapping.keys_for("ADDED", obj) == [("ns", "kcp1")]
    every_owner = enqueue_owner("KubeadmControlPlane", KCP_GROUP, controller_only=False)
    assert every_owner.keys_for("ADDED", obj) == [("ns", "kcp1"), ("ns", "not-controller")]
    assert mapping.keys_for("ADDED", machine()) == []


def test_update_maps_old_and_new_objects_without_duplicates() -> None:
    mapping = enqueue_by_label(CLUSTER_LABEL)
    old = machine(labels={CLUSTER_LABEL: "c1"})
    new = machine(labels={CLUSTER_LABEL: "c2"})
    assert mapping.keys_for("MODIFIED", new, old) == [("ns", "c1"), ("ns", "c2")]
    assert mapping.keys_for("MODIFIED", new, new) == [("ns", "c2")]
    assert mapping.keys_for("ADDED", machine()) == []


def test_map_to_uses_any_function() -> None:
    def control_plane_of(cluster: dict[str, Any]) -> list[tuple[str, str]]:
        control_plane = cluster.get("spec", {}).get("controlPlaneRef")
        if not control_plane:
            return []
        return [(cluster["metadata"]["namespace"], control_plane["name"])]

    seen: list[ObjectKey] = []
    handler = map_to(control_plane_of).bind(seen.append)
    cluster = {
        "metadata": {"name": "c1", "namespace": "ns"},
        "spec": {"controlPlaneRef": {"name": "c1-cp"}},
    }
    handler("ADDED", cluster, None)
    handler("ADDED", {"metadata": {"name": "c2", "namespace": "ns"}}, None)
    assert seen == [ObjectKey("ns", "c1-cp")]


def test_callbacks_route_events_by_type() -> None:
    calls: list[tuple[str, Any]] = []
    handler = callbacks(
        on_add=lambda o: calls.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: calls.append(("update", (old["v"], new["v"]))),
        on_delete=lambda o: calls.append(("delete", o["metadata"]["name"])),
    )
    handler("ADDED", {"metadata": {"name": "a"}}, None)
    handler("MODIFIED", {"metadata": {"name": "a"}, "v": 2}, {"metadata": {"name": "a"}, "v": 1})
    handler("DELETED", {"metadata": {"name": "a"}}, None)
    assert calls == [("add", "a"), ("update", (1, 2)), ("delete", "a")]
    callbacks()("ADDED", {"metadata": {"name": "a"}}, None)  # no callbacks: nothing happens


def test_a_failing_handler_is_contained() -> None:
    def broken(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        raise RuntimeError("boom")

    safe_call(broken, "ADDED", {"metadata": {"name": "a"}}, None)  # logs, does not raise


def test_a_change_to_fields_not_read_wakes_nothing_and_one_to_a_read_field_does() -> None:
    seen: list[str] = []
    handler = unless_unchanged(
        lambda event_type, obj, old: seen.append(
            f"{event_type} {obj['metadata']['resourceVersion']}"
        ),
        relevant_fields("initialization"),
    )

    def cluster(version: str, **status: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": "c", "resourceVersion": version, "labels": {"a": "1"}},
            "spec": {"paused": False},
            "status": status,
        }

    first = cluster("1", conditions=[{"type": "Ready", "status": "False"}])
    handler("ADDED", first, None)
    conditions_only = cluster("2", conditions=[{"type": "Ready", "status": "True"}])
    handler("MODIFIED", conditions_only, first)
    provisioned = cluster("3", initialization={"infrastructureProvisioned": True})
    handler("MODIFIED", provisioned, conditions_only)
    relabelled = cluster("4", initialization={"infrastructureProvisioned": True})
    relabelled["metadata"]["labels"] = {"a": "2"}
    handler("MODIFIED", relabelled, provisioned)
    paused = cluster("5", initialization={"infrastructureProvisioned": True})
    paused["spec"]["paused"] = True
    handler("MODIFIED", paused, cluster("5", initialization={"infrastructureProvisioned": True}))
    handler("DELETED", paused, None)
    assert seen == ["ADDED 1", "MODIFIED 3", "MODIFIED 4", "MODIFIED 5", "DELETED 5"]
