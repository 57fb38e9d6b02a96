"""Owner lookup, pause, deletion order."""

from __future__ import annotations

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView
from kcp.controlplane.lifecycle import is_paused, owned_control_plane_machines, plan_deletion
from tests.unit.controlplane.builders import cluster, kcp, machine


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
