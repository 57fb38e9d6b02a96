"""Which reconcile a change wakes: Clusters, Machines and Secrets map to their control plane."""

from __future__ import annotations

from typing import Any

from kcp.api import labels
from kcp.controlplane.controller import (
    cluster_to_control_plane,
    health_to_control_plane,
    kubeadm_config_to_control_plane,
    machine_cluster_index,
    machine_to_control_plane,
    secret_to_control_plane,
)
from kcp.runtime.controller import ObjectKey
from kcp.runtime.handlers import map_to
from kcp.runtime.store import MODIFIED
from kcp.tracker.identity import ClusterKey
from tests.unit.controlplane.builders import CLUSTER_UID, cluster, kcp, machine


class _Cache:
    def __init__(
        self,
        clusters: dict[tuple[str, str], dict[str, Any]],
        machines: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        self.clusters = clusters
        self.machines = machines or {}

    def cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.clusters.get((namespace, name))

    def machine(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.machines.get((namespace, name))


def _config(name: str, owner: dict[str, Any], *, control_plane: bool = True) -> dict[str, Any]:
    """A KubeadmConfig with one owner reference: kcp's (plain) or a Machine's (controller)."""
    metadata = owner["metadata"]
    ref: dict[str, Any] = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
    }
    if owner["kind"] == "Machine":
        ref["controller"] = True
    config_labels = {labels.CLUSTER_NAME_LABEL: "c1"}
    if control_plane:
        config_labels[labels.MACHINE_CONTROL_PLANE_LABEL] = ""
    return {
        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
        "kind": "KubeadmConfig",
        "metadata": {
            "namespace": "ns",
            "name": name,
            "labels": config_labels,
            "ownerReferences": [ref],
        },
    }


def test_cluster_maps_to_its_control_plane_ref() -> None:
    assert cluster_to_control_plane(cluster()) == [("ns", "cp")]
    other = cluster()
    other["spec"]["controlPlaneRef"]["kind"] = "SomeOtherControlPlane"
    assert cluster_to_control_plane(other) == []


def test_a_health_change_wakes_the_control_plane_of_that_cluster_only() -> None:
    cache = _Cache({("ns", "c1"): cluster()})
    woken: list[ObjectKey] = []
    handle = health_to_control_plane(cache.cluster, woken.append)
    handle(ClusterKey("ns", "c1", CLUSTER_UID))
    assert woken == [ObjectKey("ns", "cp")]
    handle(ClusterKey("ns", "c1", "an-older-uid"))  # re-created since: not this one's news
    handle(ClusterKey("ns", "gone", CLUSTER_UID))
    assert woken == [ObjectKey("ns", "cp")]


def test_machines_are_indexed_by_cluster() -> None:
    assert machine_cluster_index(machine("a")) == ["ns/c1"]
    unnamed = machine("b")
    del unnamed["spec"]["clusterName"]
    assert machine_cluster_index(unnamed) == ["ns/c1"]  # from the cluster-name label


def test_secret_maps_by_owner_else_by_cluster_label() -> None:
    mapper = secret_to_control_plane(_Cache({("ns", "c1"): cluster()}))  # type: ignore[arg-type]
    owned = {
        "metadata": {
            "namespace": "ns",
            "name": "c1-ca",
            "ownerReferences": [
                {
                    "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
                    "kind": "KubeadmControlPlane",
                    "name": "cp",
                    "uid": "u",
                    "controller": True,
                }
            ],
        }
    }
    assert mapper(owned) == [("ns", "cp")]
    users = {
        "metadata": {
            "namespace": "ns",
            "name": "c1-ca",
            "labels": {"cluster.x-k8s.io/cluster-name": "c1"},
        }
    }
    assert mapper(users) == [("ns", "cp")]
    stray = {
        "metadata": {
            "namespace": "ns",
            "name": "x",
            "labels": {"cluster.x-k8s.io/cluster-name": "gone"},
        }
    }
    assert mapper(stray) == []


def test_kubeadm_config_maps_to_its_control_plane_before_and_after_core_takes_it_over() -> None:
    """Cluster API's Machine controller replaces kcp's owner reference with the Machine's."""
    machine_a = machine("a")
    mapper = kubeadm_config_to_control_plane(
        _Cache({}, {("ns", "a"): machine_a})  # type: ignore[arg-type]
    )
    created = _config("a", kcp())
    taken_over = _config("a", machine_a)
    assert mapper(created) == [("ns", "cp")]
    assert mapper(taken_over) == [("ns", "cp")]
    assert map_to(mapper).keys_for(MODIFIED, taken_over, created) == [("ns", "cp")]


def test_kubeadm_config_of_an_uncached_machine_maps_through_its_cluster() -> None:
    mapper = kubeadm_config_to_control_plane(
        _Cache({("ns", "c1"): cluster()})  # type: ignore[arg-type]
    )
    unseen = machine("b")
    assert mapper(_config("b", unseen)) == [("ns", "cp")]
    # A worker's config (no control-plane label) wakes no control plane.
    assert mapper(_config("w", machine("w"), control_plane=False)) == []


def test_an_unowned_control_plane_machine_wakes_its_clusters_control_plane() -> None:
    """So that it is adopted without waiting for a resync."""
    mapper = machine_to_control_plane(
        _Cache({("ns", "c1"): cluster()})  # type: ignore[arg-type]
    )
    owned = machine("a", owner_uid="other-kcp")
    assert mapper(owned) == [("ns", "cp")]  # by its controller reference
    orphan = machine("b")
    del orphan["metadata"]["ownerReferences"]
    assert mapper(orphan) == [("ns", "cp")]  # by its Cluster
    controlled = machine("c")
    controlled["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "kind": "MachineSet",
            "name": "ms",
            "uid": "ms-uid",
            "controller": True,
        }
    ]
    assert mapper(controlled) == []  # someone else's
    worker = machine("w")
    del worker["metadata"]["ownerReferences"]
    del worker["metadata"]["labels"][labels.MACHINE_CONTROL_PLANE_LABEL]
    assert mapper(worker) == []
