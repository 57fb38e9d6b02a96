"""Which reconcile a change wakes: Clusters, Machines and Secrets map to their control plane."""

from __future__ import annotations

from typing import Any

from kcp.controlplane.controller import (
    cluster_to_control_plane,
    machine_cluster_index,
    secret_to_control_plane,
)
from tests.unit.controlplane.builders import cluster, machine


class _Cache:
    def __init__(self, clusters: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.clusters = clusters

    def cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.clusters.get((namespace, name))


def test_cluster_maps_to_its_control_plane_ref() -> None:
    assert cluster_to_control_plane(cluster()) == [("ns", "cp")]
    other = cluster()
    other["spec"]["controlPlaneRef"]["kind"] = "SomeOtherControlPlane"
    assert cluster_to_control_plane(other) == []


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
