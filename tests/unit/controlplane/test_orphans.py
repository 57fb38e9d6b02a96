"""What a `create_machine` interrupted by a crash leaves behind is deleted on the next reconcile."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from kcp.api import labels
from kcp.api.groups import KUBEADM_CONFIG, MACHINE
from kcp.api.objects import ClusterView
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.reconciler import KubeadmControlPlaneReconciler, ReconcilerOptions
from kcp.controlplane.scope import Scope
from kcp.rest import Resource, Unreachable
from kcp.runtime.controller import ObjectKey
from tests.unit.controlplane.builders import NOW, cluster, kcp, machine
from tests.unit.controlplane.fakes import FakeCache, FakeKube, FakeTracker

KEY = ObjectKey("ns", "cp")


class Crash(BaseException):
    """kcp killed mid-way: nothing after it runs, no undo."""


class CrashingKube(FakeKube):
    """Dies when asked to create a Machine (once), like a SIGKILL after the KubeadmConfig."""

    crash = True

    def create(
        self, resource: Resource, namespace: str | None, obj: Mapping[str, Any]
    ) -> dict[str, Any]:
        if resource.kind == "Machine" and self.crash:
            self.crash = False
            raise Crash()
        return super().create(resource, namespace, obj)


class LaggingCache(FakeCache):
    """A Machine cache that has not seen any Machine yet."""

    def cluster_machines(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]:
        return []


TEMPLATE = {
    "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
    "kind": "LocalMachineTemplate",
    "metadata": {"name": "tmpl", "namespace": "ns"},
    "spec": {"template": {"spec": {"size": "s"}}},
}


def _reconciler(
    kube: FakeKube, cache: FakeCache | None = None, **options: Any
) -> KubeadmControlPlaneReconciler:
    return KubeadmControlPlaneReconciler(
        kube,  # type: ignore[arg-type]
        cache or FakeCache(kube),
        FakeTracker(),
        recorder=EventRecorder(kube),  # type: ignore[arg-type]
        options=ReconcilerOptions(expectation_timeout=0.0, **options),
        clock=lambda: NOW,
        workload_api=lambda api: api,
    )


def _scope(kube: FakeKube) -> Scope:
    obj = kube.get(
        kube.resource_for("controlplane.cluster.x-k8s.io", "KubeadmControlPlane"), "ns", "cp"
    )
    assert obj is not None
    return Scope(kcp=obj, cluster=ClusterView(cluster()), machines=[], now=NOW, initialized=False)


def _owned(
    kind: str, name: str, *, owner_uid: str = "kcp-uid-1", controller: bool = True
) -> dict[str, Any]:
    api_version = (
        "bootstrap.cluster.x-k8s.io/v1beta2"
        if kind == "KubeadmConfig"
        else "infrastructure.cluster.x-k8s.io/v1beta2"
    )
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{kind}-{name}",
            "labels": labels.control_plane_machine_labels("cp", "c1"),
            "ownerReferences": [
                {
                    "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
                    "kind": "KubeadmControlPlane",
                    "name": "cp",
                    "uid": owner_uid,
                    "controller": controller,
                }
            ],
        },
        "spec": {},
    }


def _names(kube: FakeKube, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in kube.of_kind(kind)}


def _orphan_events(kube: FakeKube) -> list[str]:
    return [e["message"] for e in kube.of_kind("Event") if e["reason"] == "DeletedOrphan"]


def test_a_crash_between_the_kubeadm_config_and_the_machine_leaves_nothing() -> None:
    kube = CrashingKube()
    kube.put(copy.deepcopy(TEMPLATE))
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    with pytest.raises(Crash):
        _reconciler(kube).reconcile(KEY)
    [left] = _names(kube, "KubeadmConfig")
    assert _names(kube, "LocalMachine") == {left}
    assert not kube.of_kind("Machine")

    _reconciler(kube).reconcile(KEY)  # the restarted controller

    [created] = _names(kube, "Machine")
    assert created != left
    assert _names(kube, "KubeadmConfig") == {created}
    assert _names(kube, "LocalMachine") == {created}
    messages = _orphan_events(kube)
    assert len(messages) == 2
    assert any(
        f"KubeadmConfig ns/{left}" in m and "no Machine references it" in m for m in messages
    )
    assert any(f"LocalMachine ns/{left}" in m for m in messages)


def test_referenced_objects_and_those_of_others_are_kept() -> None:
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    kube.put(machine("a"))
    for kind in ("KubeadmConfig", "LocalMachine"):
        kube.put(_owned(kind, "a"))  # referenced by Machine a
        kube.put(_owned(kind, "other", owner_uid="another-kcp"))
        unowned = _owned(kind, "unowned")
        unowned["metadata"]["ownerReferences"] = []
        kube.put(unowned)
        deleting = _owned(kind, "deleting")
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        kube.put(deleting)
        kube.put(_owned(kind, "orphan"))
    reconciler = _reconciler(kube)
    reconciler.orphans.cleanup(_scope(kube))
    for kind in ("KubeadmConfig", "LocalMachine"):
        assert _names(kube, kind) == {"a", "other", "unowned", "deleting"}, kind
    assert len(_orphan_events(kube)) == 2


def test_orphans_owned_without_being_controlled_are_deleted_machine_controlled_kept() -> None:
    """kcp and Cluster API's KCP own these objects with a plain owner reference; once a
    Machine exists, Cluster API's Machine controller makes it their only controller."""
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    for kind in ("KubeadmConfig", "LocalMachine"):
        kube.put(_owned(kind, "plain", controller=False))
        taken = _owned(kind, "taken")
        taken["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "cluster.x-k8s.io/v1beta2",
                "kind": "Machine",
                "name": "taken",
                "uid": "uid-taken",
                "controller": True,
            }
        ]
        kube.put(taken)
    _reconciler(kube).orphans.cleanup(_scope(kube))
    for kind in ("KubeadmConfig", "LocalMachine"):
        assert _names(kube, kind) == {"taken"}, kind
    assert len(_orphan_events(kube)) == 2


def test_a_machine_the_cache_has_not_seen_yet_keeps_its_objects() -> None:
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    kube.put(machine("a"))
    kube.put(_owned("KubeadmConfig", "a"))
    kube.put(_owned("LocalMachine", "a"))
    reconciler = _reconciler(kube, LaggingCache(kube))
    reconciler.orphans.cleanup(_scope(kube))
    assert _names(kube, "KubeadmConfig") == {"a"}
    assert _names(kube, "LocalMachine") == {"a"}
    assert ("get", MACHINE.kind, "a") in kube.calls
    assert not _orphan_events(kube)


def test_infrastructure_machines_are_listed_once_then_only_when_suspect() -> None:
    kube = FakeKube()
    kube.put(kcp(replicas=1))
    orphans = _reconciler(kube).orphans
    orphans.cleanup(_scope(kube))  # the first reconcile since kcp started
    kube.put(_owned("LocalMachine", "late"))
    orphans.cleanup(_scope(kube))
    assert _names(kube, "LocalMachine") == {"late"}  # not listed again
    kube.put(_owned("KubeadmConfig", "late"))
    orphans.cleanup(_scope(kube))  # a KubeadmConfig orphan: list the infrastructure now
    assert not _names(kube, "LocalMachine")
    assert not _names(kube, KUBEADM_CONFIG.kind)
    kube.put(_owned("LocalMachine", "later"))
    orphans.cleanup(_scope(kube))
    assert _names(kube, "LocalMachine") == {"later"}
    orphans.suspect(str(_scope(kube).view.uid))  # a creation failed part way
    orphans.cleanup(_scope(kube))
    assert not _names(kube, "LocalMachine")


def test_a_machine_creation_that_fails_part_way_is_cleaned_up_in_the_same_process() -> None:
    kube = FailingMachineKube()
    kube.put(copy.deepcopy(TEMPLATE))
    kube.put(kcp(replicas=1))
    kube.put(cluster())
    reconciler = _reconciler(kube)
    with pytest.raises(Unreachable):
        reconciler.reconcile(KEY)
    [left] = _names(kube, "LocalMachine")
    reconciler.reconcile(KEY)  # the same process, the create retried
    [created] = _names(kube, "Machine")
    assert _names(kube, "LocalMachine") == {created} != {left}
    assert _names(kube, "KubeadmConfig") == {created}


class FailingMachineKube(FakeKube):
    """The connection breaks on the first KubeadmConfig create (the infrastructure machine
    exists): no answer, so nothing is undone, and no orphan KubeadmConfig tells of it."""

    refuse = True

    def create(
        self, resource: Resource, namespace: str | None, obj: Mapping[str, Any]
    ) -> dict[str, Any]:
        if resource.kind == KUBEADM_CONFIG.kind and self.refuse:
            self.refuse = False
            raise Unreachable("connection reset by peer")
        return super().create(resource, namespace, obj)
