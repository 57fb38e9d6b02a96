"""Owner lookup, pause, deletion order."""

from __future__ import annotations

import copy
from typing import cast

import pytest

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView
from kcp.controlplane.lifecycle import is_paused, owned_control_plane_machines, plan_deletion
from kcp.rest import ApiError, Kube
from kcp.runtime.finalizers import remove_finalizer
from tests.unit.controlplane.builders import cluster, kcp, machine
from tests.unit.controlplane.fakes import FakeKube

KCP, FINALIZER = groups.KUBEADM_CONTROL_PLANE, labels.KUBEADM_CONTROL_PLANE_FINALIZER


def test_pause_by_cluster_or_annotation() -> None:
    assert not is_paused(KubeadmControlPlaneView(kcp()), ClusterView(cluster()))
    assert is_paused(KubeadmControlPlaneView(kcp()), ClusterView(cluster(paused=True)))
    annotated = kcp(annotations={labels.PAUSED_ANNOTATION: ""})
    assert is_paused(KubeadmControlPlaneView(annotated), ClusterView(cluster()))


def test_only_machines_we_control_are_ours() -> None:
    ours = machine("a")
    foreign = machine("b", owner_uid="someone-else")
    worker = machine("w")
    del worker["metadata"]["labels"][labels.MACHINE_CONTROL_PLANE_LABEL]
    owned = owned_control_plane_machines(KubeadmControlPlaneView(kcp()), [ours, foreign, worker])
    assert [m.name for m in owned] == ["a"]


def test_deletion_waits_for_workers_then_deletes_control_plane() -> None:
    cp = [MachineView(machine("a")), MachineView(machine("b", deleting=True))]
    worker_obj = machine("w")
    del worker_obj["metadata"]["labels"][labels.MACHINE_CONTROL_PLANE_LABEL]
    worker = MachineView(worker_obj)
    blocked = plan_deletion(cp, [*cp, worker])
    assert not blocked.done
    assert blocked.to_delete == ()
    assert blocked.reason == c.WAITING_FOR_WORKERS_DELETION_REASON
    assert "Machines: w" in blocked.message
    deleting = plan_deletion(cp, cp)
    assert deleting.to_delete == ("a",)
    assert deleting.message == "Deleting 2 Machines"
    assert plan_deletion([], []).done


def test_removing_the_finalizer_of_an_object_already_gone_is_done_not_an_error() -> None:
    """A reconcile from a cache that has not seen the deletion yet patches a deleted object."""
    stale = kcp()
    stale["metadata"]["finalizers"] = [labels.KUBEADM_CONTROL_PLANE_FINALIZER]
    fake = FakeKube()
    assert remove_finalizer(cast(Kube, fake), KCP, stale, FINALIZER) is True
    assert fake.calls == [("patch", "KubeadmControlPlane", stale["metadata"]["name"])]


def test_removing_the_finalizer_still_reports_other_errors() -> None:
    current = kcp()
    current["metadata"]["finalizers"] = [labels.KUBEADM_CONTROL_PLANE_FINALIZER]
    fake = FakeKube()
    stored = fake.put(copy.deepcopy(current))
    stale = copy.deepcopy(stored)
    fake.put(stored)  # a newer resourceVersion: the stale object's patch conflicts
    with pytest.raises(ApiError) as raised:
        remove_finalizer(cast(Kube, fake), KCP, stale, FINALIZER)
    assert raised.value.status == 409
