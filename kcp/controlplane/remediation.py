"""Which unhealthy control-plane Machine to remediate, and whether now: pure decisions.

The rules are Cluster API's KubeadmControlPlane's. A Machine is KCP's to
remediate once a MachineHealthCheck found it unhealthy
(`HealthCheckSucceeded=False`) and left the remediation to its owner
(`OwnerRemediated=False`). One Machine at a time, the "most broken" first,
and only when no other remediation is waiting for its replacement. Retries
are counted through the Machines (`kcp.controlplane.remediation_retries`).
Once the control plane is
initialized a Machine is removed only if more than one exists, none is
provisioning or being deleted, etcd's member list is known, another Machine
keeps healthy control-plane components and the members left keep quorum.
Before initialization (the first Machine never came up) none of that applies.
Each refusal is an `OwnerRemediated` reason and message for the Machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import MachineView
from kcp.controlplane.condition import Condition
from kcp.controlplane.remediation_retries import (
    RemediationData,
    RemediationSettings,
    check_retry_limits,
    stale_in_progress,
)
from kcp.controlplane.scaling import can_remove_member, quorum
from kcp.etcd import EtcdClusterStatus

__all__ = [
    "RemediationStep",
    "needs_cleanup",
    "pick_machine_to_remediate",
    "plan_remediation",
    "remediating_condition",
    "replacement_problems",
    "to_be_remediated",
    "unhealthy",
]

_COMPONENTS = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
)
_MOST_BROKEN_FIRST = (
    c.ETCD_MEMBER_HEALTHY,
    c.ETCD_POD_HEALTHY,
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
)
_REMEDIATE_MACHINE_ANNOTATION = "cluster.x-k8s.io/remediate-machine"
_EPOCH = datetime.min.replace(tzinfo=UTC)


def unhealthy(machine: MachineView) -> bool:
    """A MachineHealthCheck found the Machine unhealthy (whoever remediates it)."""
    return c.is_false(machine.raw, c.HEALTH_CHECK_SUCCEEDED)


def to_be_remediated(machine: MachineView) -> bool:
    """Unhealthy, and the remediation is the owner's (KCP's) to do."""
    return unhealthy(machine) and c.is_false(machine.raw, c.OWNER_REMEDIATED)


def needs_cleanup(machine: MachineView) -> bool:
    """Healthy again with KCP's OwnerRemediated=False left over: the condition should go."""
    return (
        not machine.is_deleting
        and c.is_true(machine.raw, c.HEALTH_CHECK_SUCCEEDED)
        and c.is_false(machine.raw, c.OWNER_REMEDIATED)
    )


def _breakage(machine: MachineView) -> tuple[int, ...]:
    """Sort key: smaller is more broken (Cluster API's priorities)."""
    key = [
        0 if _REMEDIATE_MACHINE_ANNOTATION in machine.annotations else 1,
        0 if machine.node_name is None else 1,
    ]
    key.extend(0 if not c.is_true(machine.raw, t) else 1 for t in _MOST_BROKEN_FIRST)
    return tuple(key)


def pick_machine_to_remediate(machines: Sequence[MachineView]) -> MachineView | None:
    """Of the Machines to remediate, the most broken; ties go to the oldest, then the name.

    Marked with `cluster.x-k8s.io/remediate-machine` first, then without a Node,
    then with an unhealthy etcd member or Pod, then with an unhealthy API
    server, controller manager or scheduler.
    """
    candidates = [m for m in machines if to_be_remediated(m)]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda m: (_breakage(m), m.creation_timestamp or _EPOCH, m.name),
    )


@dataclass(frozen=True)
class RemediationStep:
    """What to do about unhealthy Machines now: `none`, `wait` or `remediate`."""

    action: Literal["none", "wait", "remediate"]
    machine: MachineView | None = None
    """The Machine the step is about (the one picked for remediation)."""
    reason: str = ""
    """`wait`: the OwnerRemediated reason to set on `machine` (empty: leave it as it is)."""
    message: str = ""
    data: RemediationData | None = None
    """`remediate`: what to record in the remediation-in-progress annotation."""
    blocked_by_safety: bool = False
    """`wait` because removing the Machine could cost quorum or the last healthy components."""


def _components_healthy(conditions: Sequence[Condition]) -> bool:
    by_type = {x.type: x for x in conditions}
    return all(t in by_type and by_type[t].is_true for t in _COMPONENTS)


def _safety_problem(
    victim: MachineView,
    machines: Sequence[MachineView],
    etcd: EtcdClusterStatus,
    health: Mapping[str, Sequence[Condition]],
) -> str | None:
    """Why removing `victim` could leave no healthy control plane or lose quorum (None: safe)."""
    if not any(_components_healthy(health.get(m.name, ())) for m in machines if m is not victim):
        return (
            f"KubeadmControlPlane can't remediate Machine {victim.name}: no other Machine has "
            "healthy control plane components (kube-apiserver, kube-controller-manager, "
            "kube-scheduler, etcd), so removing it could lose the Kubernetes control plane"
        )
    node = victim.node_name
    if not node:
        return None  # no known member: nothing of etcd to check (Cluster API's choice too)
    member = next((m for m in etcd.members if m.name == node), None)
    ok, why = can_remove_member(etcd, node, member_id=member.id if member else None)
    if not ok:
        return (
            f"KubeadmControlPlane can't remediate Machine {victim.name} without risking etcd "
            f"quorum: {why}"
        )
    return None


def plan_remediation(
    *,
    machines: Sequence[MachineView],
    kcp_annotations: Mapping[str, str],
    initialized: bool,
    settings: RemediationSettings,
    now: datetime,
    etcd: EtcdClusterStatus | None,
    health: Mapping[str, Sequence[Condition]],
    nodes_known: bool = True,
) -> RemediationStep:
    """The next remediation step over the control plane's `machines`.

    `etcd` is the member list read this reconcile (None: unknown), `health`
    the per-Machine conditions computed this reconcile, `nodes_known` whether
    the workload cluster's Nodes could be listed.
    """
    victim = pick_machine_to_remediate(machines)
    if victim is None or victim.is_deleting:
        return RemediationStep("none", victim)
    if labels.REMEDIATION_IN_PROGRESS_ANNOTATION in kcp_annotations and not stale_in_progress(
        kcp_annotations, machines
    ):
        # Another remediation waits for its replacement; nothing said on this Machine yet.
        return RemediationStep("wait", victim)
    retry = check_retry_limits(victim, settings, now)
    if not retry.allowed:
        return RemediationStep("wait", victim, retry.reason, retry.message)
    if not initialized:
        return RemediationStep("remediate", victim, data=retry.data)
    if len(machines) <= 1:
        return RemediationStep(
            "wait",
            victim,
            c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON,
            "KubeadmControlPlane can't remediate if current replicas are less or equal to 1",
        )
    provisioning = sorted(m.name for m in machines if not unhealthy(m) and m.node_name is None)
    if provisioning:
        return RemediationStep(
            "wait",
            victim,
            c.OWNER_REMEDIATED_DEFERRED_REASON,
            "KubeadmControlPlane waiting for control plane Machine provisioning to complete "
            f"before triggering remediation (provisioning: {', '.join(provisioning)})",
        )
    deleting = sorted(m.name for m in machines if m.is_deleting)
    if deleting:
        return RemediationStep(
            "wait",
            victim,
            c.OWNER_REMEDIATED_DEFERRED_REASON,
            "KubeadmControlPlane waiting for control plane Machine deletion to complete before "
            f"triggering remediation (deleting: {', '.join(deleting)})",
        )
    if etcd is None or not etcd.members or not nodes_known:
        return RemediationStep(
            "wait",
            victim,
            c.OWNER_REMEDIATED_DEFERRED_REASON,
            "Failed to check etcd cluster health before remediation",
        )
    problem = _safety_problem(victim, machines, etcd, health)
    if problem is not None:
        return RemediationStep(
            "wait",
            victim,
            c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON,
            problem,
            blocked_by_safety=True,
        )
    if not any(not unhealthy(m) for m in machines if m is not victim):
        return RemediationStep(
            "wait",
            victim,
            c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON,
            "KubeadmControlPlane can't remediate this Machine because there is no healthy "
            "Machine to forward etcd leadership to",
            blocked_by_safety=True,
        )
    return RemediationStep("remediate", victim, data=retry.data)


def replacement_problems(
    machines: Sequence[MachineView],
    etcd: EtcdClusterStatus | None,
    health: Mapping[str, Sequence[Condition]],
) -> tuple[str, ...]:
    """Why the replacement of a remediated Machine may not be created yet (empty: go ahead).

    Less demanding than the usual preflight checks, so that a control plane with
    more than one failure can recover: one Machine must keep healthy components,
    and etcd must keep quorum even if the new member never becomes healthy.
    """
    problems: list[str] = []
    if not any(_components_healthy(health.get(m.name, ())) for m in machines):
        problems.append(
            "cannot add a new control plane Machine when there are no control plane Machines "
            "with all Kubernetes control plane components in healthy state"
        )
    if etcd is None or not etcd.members:
        problems.append(
            "cannot check etcd cluster health before scale up, etcd member list is empty"
        )
        return tuple(problems)
    joining = sorted(m.name or f"{m.id:x}" for m in etcd.members if m.is_learner or not m.started)
    if joining:
        problems.append(f"etcd member {', '.join(joining)} is still joining")
        return tuple(problems)
    healthy_ids = {h.member_id for h in etcd.health if h.member_id is not None and h.healthy}
    voting = len(etcd.members) + 1
    unhealthy_count = sum(1 for m in etcd.members if m.id not in healthy_ids)
    if len(etcd.members) > 1:
        unhealthy_count += 1  # the new member, at worst never healthy
    if voting - unhealthy_count < quorum(voting):
        sick = sorted(m.name for m in etcd.members if m.id not in healthy_ids)
        problems.append(
            f"adding a new control plane Machine can lead to etcd quorum loss: "
            f"{voting - unhealthy_count} of {voting} members would be healthy at worst, "
            f"fewer than the quorum of {quorum(voting)} (not healthy: {', '.join(sick) or '-'})"
        )
    return tuple(problems)


def _owner_remediated_message(machine: MachineView) -> str:
    condition = c.get_condition(machine.raw, c.OWNER_REMEDIATED) or {}
    return str(condition.get("message") or condition.get("reason") or "waiting for remediation")


def remediating_condition(machines: Sequence[MachineView]) -> Condition:
    """The KCP's `Remediating`: True while Machines are KCP's to remediate, saying how it goes."""
    remediate = sorted((m for m in machines if to_be_remediated(m)), key=lambda m: m.name)
    if remediate:
        lines = [f"* Machine {m.name}: {_owner_remediated_message(m)}" for m in remediate]
        return Condition.true(c.REMEDIATING, c.REMEDIATING_REASON, "\n".join(lines))
    others = sorted(m.name for m in machines if unhealthy(m))
    if not others:
        return Condition.false(c.REMEDIATING, c.NOT_REMEDIATING_REASON)
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    verb = "is" if len(others) == 1 else "are"
    noun = "Machine" if len(others) == 1 else "Machines"
    return Condition.false(
        c.REMEDIATING,
        c.NOT_REMEDIATING_REASON,
        f"{noun} {shown} {verb} not healthy (not to be remediated by KubeadmControlPlane)",
    )
