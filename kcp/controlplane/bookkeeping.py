"""Which etcd member goes next, and when: pure decisions on the Machines and etcd's member list.

The rules are Cluster API's. A control-plane Machine's member is removed from
KCP's pre-terminate hook: only once core has drained the Machine's Node and
waits on the hook (its `Deleting` condition says `WaitingForPreTerminateHook`),
one Machine at a time (the oldest deletion first), after every other
pre-terminate hook, and only if the members left keep quorum and another
Machine keeps a healthy set of control-plane components. A member that no
Machine backs is removed when the cluster is not otherwise in flux (no Machine
provisioning that could be its owner) and quorum survives. Each decision says
what it waits for, in words for a condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import MachineView
from kcp.controlplane.condition import Condition
from kcp.controlplane.scaling import can_remove_member
from kcp.etcd import EtcdClusterStatus, Member

__all__ = [
    "HookStep",
    "UnbackedStep",
    "has_hook",
    "member_label",
    "other_pre_terminate_hooks",
    "pre_terminate_step",
    "unbacked_member_step",
    "waiting_for_pre_terminate_hook",
]

_COMPONENTS = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
)
_LATEST = datetime.max


def has_hook(machine: MachineView) -> bool:
    """Whether the Machine carries KCP's pre-terminate hook."""
    return labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION in machine.annotations


def other_pre_terminate_hooks(machine: MachineView) -> list[str]:
    """Pre-terminate hooks of others on the Machine: KCP's goes last, while the kubelet works."""
    prefix = labels.PRE_TERMINATE_DELETE_HOOK_ANNOTATION_PREFIX
    return sorted(
        key
        for key in machine.annotations
        if key.startswith(prefix) and key != labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION
    )


def waiting_for_pre_terminate_hook(machine: MachineView) -> bool:
    """Whether core has drained the Machine and now waits only on pre-terminate hooks."""
    deleting = c.find_condition(machine.conditions, c.DELETING)
    return (
        deleting is not None
        and deleting.get("status") == c.TRUE
        and deleting.get("reason") == c.MACHINE_DELETING_WAITING_FOR_PRE_TERMINATE_HOOK_REASON
    )


def member_label(member: Member) -> str:
    """A member's name, or its id while it has none (added, never started)."""
    return member.name or f"{member.id:x} (name not yet assigned)"


@dataclass(frozen=True)
class HookStep:
    """What to do now about Machines being deleted: `none`, `wait`, `release` or `remove`."""

    action: Literal["none", "wait", "release", "remove"]
    machine: str | None = None
    """The deleting Machine the step is about."""
    member: Member | None = None
    """`remove`: the member to remove (then release the hook)."""
    reason: str = ""
    """Why it waits, or why the hook goes without touching etcd."""
    held_by: Literal["", "etcd", "components"] = ""
    """A safety check holds the deletion: the condition of that name should say why."""


def _components_healthy(conditions: Sequence[Condition]) -> bool:
    by_type = {x.type: x for x in conditions}
    return all(t in by_type and by_type[t].is_true for t in _COMPONENTS)


def pre_terminate_step(
    machines: Sequence[MachineView],
    etcd: EtcdClusterStatus | None,
    health: Mapping[str, Sequence[Condition]],
) -> HookStep:
    """The next step of KCP's pre-terminate hook over the control plane's `machines`.

    `etcd` is the member list read this reconcile (None: unknown); `health`
    the per-Machine conditions computed this reconcile.
    """
    deleting = [m for m in machines if m.is_deleting]
    if not deleting:
        return HookStep("none")
    without = sorted(m.name for m in deleting if not has_hook(m))
    if without:
        # Released already, or never set: core tears it down without waiting for us (a member
        # left behind is removed as one no Machine backs). One Machine at a time.
        return HookStep(
            "wait",
            without[0],
            reason=f"Machine {without[0]} is being deleted without KCP's pre-terminate hook; "
            "waiting for it to go before handling another",
        )
    machine = min(deleting, key=lambda m: (m.deletion_timestamp or _LATEST, m.name))
    others = other_pre_terminate_hooks(machine)
    if others:
        return HookStep(
            "wait",
            machine.name,
            reason=f"Machine {machine.name} waits for its other pre-terminate hooks to be "
            f"removed first: {', '.join(others)}",
        )
    if not waiting_for_pre_terminate_hook(machine):
        return HookStep(
            "wait",
            machine.name,
            reason=f"Machine {machine.name} is being drained by Cluster API; its etcd member "
            "goes once the Machine waits on the pre-terminate hook",
        )
    if len(machines) <= 1:
        return HookStep("release", machine.name, reason="the last control-plane Machine")
    if not any(
        _components_healthy(health.get(m.name, ())) for m in machines if m.name != machine.name
    ):
        return HookStep(
            "wait",
            machine.name,
            reason=f"deleting Machine {machine.name} would leave no Machine with healthy control "
            "plane components; its deletion waits until another Machine's are healthy",
            held_by="components",
        )
    node = machine.node_name
    if not node:
        return HookStep("release", machine.name, reason="the Machine never reported a Node")
    if etcd is None or not etcd.members:
        return HookStep(
            "wait",
            machine.name,
            reason=f"the etcd member list is not known; Machine {machine.name} keeps its member "
            "until etcd answers",
        )
    member = next((m for m in etcd.members if m.name == node), None)
    if member is None:
        return HookStep("release", machine.name, reason=f"etcd has no member {node}")
    ok, why = can_remove_member(etcd, node, member_id=member.id)
    if not ok:
        return HookStep(
            "wait",
            machine.name,
            member,
            reason=f"Machine {machine.name} is being deleted but keeps its etcd member: {why}",
            held_by="etcd",
        )
    return HookStep("remove", machine.name, member)


@dataclass(frozen=True)
class UnbackedStep:
    """What to do about members no Machine backs: `none`, `wait`, `hold` or `remove`."""

    action: Literal["none", "wait", "hold", "remove"]
    member: Member | None = None
    """The member to remove (`remove`) or that cannot be removed safely (`hold`)."""
    reason: str = ""


def unbacked_member_step(
    machines: Sequence[MachineView],
    etcd: EtcdClusterStatus | None,
    *,
    etcd_cluster_healthy: bool,
) -> UnbackedStep:
    """Whether to remove a member no Machine backs, one at a time, as Cluster API does.

    Nothing happens while `EtcdClusterHealthy` is True (no mismatch), while the
    member list is unknown, or while a Machine has no Node yet (the member may
    be the one it is starting: `wait`). A member that would take quorum with it
    is held (`hold`); one never started needs no check (it does not vote).
    """
    if not machines or etcd is None or not etcd.members or etcd_cluster_healthy:
        return UnbackedStep("none")
    expected = {m.node_name for m in machines if m.node_name}
    unbacked = sorted(
        (m for m in etcd.members if not m.name or m.name not in expected),
        key=lambda m: (m.name, m.id),
    )
    if not unbacked:
        return UnbackedStep("none")
    names = ", ".join(member_label(m) for m in unbacked)
    provisioning = sorted(m.name for m in machines if m.node_name is None)
    if provisioning:
        return UnbackedStep(
            "wait",
            reason=f"etcd member {names} has no Machine, but may be the member of provisioning "
            f"Machine {', '.join(provisioning)}",
        )
    member = unbacked[0]
    if member.started:
        ok, why = can_remove_member(etcd, member.name, member_id=member.id)
        if not ok:
            return UnbackedStep(
                "hold",
                member,
                reason=f"etcd member {member.name} does not have a corresponding Machine and "
                f"must be removed, but not now: {why}",
            )
    return UnbackedStep("remove", member, reason=f"etcd member {names} has no Machine")
