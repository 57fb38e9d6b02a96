"""Taking a Machine's etcd member out of the cluster, without ever losing quorum.

Before a control-plane Machine goes, its etcd member must go: first etcd
leadership moves to the newest healthy member on another Machine (a leader
removing itself stalls the cluster until an election), then the member is
removed through another member. Nothing happens unless the members left would
still be a healthy quorum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kcp.api.objects import MachineView
from kcp.controlplane.scaling import can_remove_member
from kcp.controlplane.workload import WorkloadCluster
from kcp.etcd import EtcdClusterStatus, MemberHealth

__all__ = ["MemberRemoval", "QuorumAtRisk", "leadership_target", "remove_machine_member"]


class QuorumAtRisk(Exception):
    """Removing the member now would leave etcd without a healthy quorum."""


@dataclass(frozen=True)
class MemberRemoval:
    member: str
    member_id: int | None
    removed: bool
    """False when the Machine had no member (nothing to remove)."""
    leader_moved_to: str | None = None


def leadership_target(
    etcd: EtcdClusterStatus, leaving: MachineView, machines: Sequence[MachineView]
) -> MemberHealth | None:
    """The healthy member on the newest other Machine: where leadership should go."""
    others = sorted(
        (m for m in machines if m.name != leaving.name and not m.is_deleting and m.node_name),
        key=lambda m: (m.creation_timestamp is not None, m.creation_timestamp, m.name),
        reverse=True,
    )
    for machine in others:
        member = etcd.member(str(machine.node_name))
        if member is not None and member.healthy and member.member_id is not None:
            return member
    return None


def remove_machine_member(
    workload: WorkloadCluster,
    endpoints: Sequence[str],
    etcd: EtcdClusterStatus,
    machine: MachineView,
    machines: Sequence[MachineView],
    *,
    check_quorum: bool = True,
) -> MemberRemoval:
    """Move leadership away from `machine`'s member if it leads, then remove the member.

    Raises `QuorumAtRisk` (and does nothing) when the other members would not
    keep quorum; etcd errors pass through.
    """
    node = machine.node_name or ""
    member = next((m for m in etcd.members if m.name == node), None) if node else None
    if member is None:
        return MemberRemoval(node, None, removed=False)
    if check_quorum:
        ok, why = can_remove_member(etcd, node)
        if not ok:
            raise QuorumAtRisk(why)
    moved_to = None
    if etcd.leader_id == member.id:
        target = leadership_target(etcd, machine, machines)
        if target is not None and target.member_id is not None:
            workload.move_leader(endpoints, target.member_id)
            moved_to = target.name
    health = etcd.by_id(member.id)
    workload.remove_member(
        endpoints, member.id, avoid=(health.endpoint if health and health.endpoint else "")
    )
    return MemberRemoval(node, member.id, removed=True, leader_moved_to=moved_to)
