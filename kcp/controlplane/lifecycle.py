"""Where a KubeadmControlPlane stands in its life: owner Cluster, finalizer, pause, deletion.

Cluster API's Cluster controller sets the KubeadmControlPlane's owner
reference; until it does there is nothing to reconcile. The finalizer keeps the
object until its Machines are gone. A paused Cluster (`spec.paused`) or the
`cluster.x-k8s.io/paused` annotation stops everything but the `Paused`
condition. Deletion waits for worker Machines to go first, then deletes the
control-plane Machines, then drops the finalizer (with `kcp.runtime.finalizers`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kcp.api import conditions as c
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView

__all__ = [
    "DeletionPlan",
    "is_paused",
    "owned_control_plane_machines",
    "plan_deletion",
]


def is_paused(kcp: KubeadmControlPlaneView, cluster: ClusterView | None) -> bool:
    """Paused by the Cluster's `spec.paused` or by the annotation on either object."""
    if kcp.paused_annotation:
        return True
    return cluster is not None and (cluster.paused or cluster.paused_annotation)


def owned_control_plane_machines(
    kcp: KubeadmControlPlaneView, machines: Sequence[Mapping[str, Any]]
) -> list[MachineView]:
    """The control-plane Machines this KubeadmControlPlane controls (by owner UID)."""
    owned: list[MachineView] = []
    for obj in machines:
        machine = MachineView(obj)
        if not machine.is_control_plane:
            continue
        if any(ref.controller and ref.uid == kcp.uid for ref in machine.owner_references):
            owned.append(machine)
    return sorted(owned, key=lambda m: m.name)


@dataclass(frozen=True)
class DeletionPlan:
    """What deleting the control plane does now, and the `Deleting` condition it reports."""

    done: bool
    """No control-plane Machine is left: drop the finalizer."""
    to_delete: tuple[str, ...]
    """Machines to delete now (not yet being deleted)."""
    reason: str
    message: str


def plan_deletion(
    control_plane: Sequence[MachineView], all_machines: Sequence[MachineView]
) -> DeletionPlan:
    """Worker Machines first, then the control plane's, then the finalizer."""
    if not control_plane:
        return DeletionPlan(True, (), c.DELETION_COMPLETED_REASON, "Deletion completed")
    ours = {m.name for m in control_plane}
    workers = sorted(m.name for m in all_machines if m.name not in ours and not m.is_control_plane)
    if workers:
        return DeletionPlan(
            False,
            (),
            c.WAITING_FOR_WORKERS_DELETION_REASON,
            "KubeadmControlPlane deletion blocked because following objects still exist:\n"
            f"* Machines: {', '.join(workers)}",
        )
    to_delete = tuple(m.name for m in control_plane if not m.is_deleting)
    count = len(control_plane)
    noun = "Machine" if count == 1 else "Machines"
    return DeletionPlan(
        False, to_delete, c.WAITING_FOR_MACHINE_DELETION_REASON, f"Deleting {count} {noun}"
    )
