"""Keeping etcd's member list equal to the control plane's Machines, as Cluster API's KCP does.

Every live Machine carries KCP's pre-terminate hook. When one is deleted — by
a scale down, a rollout, `kubectl delete machine` or a remediation — core
drains its Node and then waits on the hook; here leadership moves away from
its member if that leads, the member is removed through another member, and
the hook is released so that core tears the machine down. A member no
Machine backs is removed when that is safe, and never while a Machine of the
cluster could not be adopted (it may be that Machine's). Nothing is ever removed that
would cost etcd its quorum: the condition that covers it says why instead.
`kcp.controlplane.bookkeeping` decides; this module acts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import MachineView
from kcp.controlplane.bookkeeping import (
    HookStep,
    has_hook,
    member_label,
    pre_terminate_step,
    unbacked_member_step,
)
from kcp.controlplane.condition import Condition
from kcp.controlplane.scope import Scope, Step
from kcp.controlplane.workload import NotConnected, WorkloadCluster
from kcp.etcd import EtcdClusterStatus, EtcdError, Member, MemberHealth
from kcp.rest import ApiError
from kcp.runtime.logging import get_logger

__all__ = ["MemberBookkeeping", "forward_leadership", "leadership_target"]

_log = get_logger("kcp.controlplane.reconciler")

UNBACKED_REQUEUE = 1.0
"""Seconds before looking again after removing a member no Machine backed."""


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


def forward_leadership(
    workload: WorkloadCluster,
    endpoints: Sequence[str],
    etcd: EtcdClusterStatus,
    leaving: MachineView,
    machines: Sequence[MachineView],
) -> str | None:
    """Move etcd leadership off `leaving`'s member if it leads; the new leader's name, if moved.

    A leader that removes itself stalls the cluster until an election; etcd errors pass through.
    """
    node = leaving.node_name
    member = next((m for m in etcd.members if m.name == node), None) if node else None
    if member is None or etcd.leader_id != member.id:
        return None
    target = leadership_target(etcd, leaving, machines)
    if target is None or target.member_id is None:
        return None
    workload.move_leader(endpoints, target.member_id)
    return target.name


class MemberBookkeeping(Step):
    """The hook on every Machine, the member of a deleting Machine, members without Machines."""

    def reconcile(self, scope: Scope) -> bool:
        """One bookkeeping pass; True when it changed etcd and the reconcile should stop here."""
        if not scope.machines:
            return False
        self.ensure_hooks(scope)
        # A Machine kcp refused to adopt backs a member kcp cannot see: remove none.
        if not scope.adoption_refused and self._unbacked(scope):
            return True
        self._pre_terminate(scope)
        return False

    # -- the hook -----------------------------------------------------------------------

    def ensure_hooks(self, scope: Scope) -> None:
        """Put KCP's pre-terminate hook on every live Machine that lacks it (adopted, older)."""
        for index, machine in enumerate(scope.machines):
            if machine.is_deleting or has_hook(machine):
                continue
            annotations = {labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION: ""}
            try:
                written = self.kube.merge_patch(
                    groups.MACHINE,
                    machine.namespace,
                    machine.name,
                    {"metadata": {"annotations": annotations}},
                )
            except ApiError as error:
                if not error.not_found:
                    raise
                continue
            scope.machines[index] = MachineView(written)
            _log.info("Added the pre-terminate hook", machine=machine.name)

    def release_hook(self, machine: MachineView) -> None:
        """Let core finish deleting `machine` (nothing to do when the hook is gone already)."""
        if not has_hook(machine):
            return
        annotations = {labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION: None}
        try:
            self.kube.merge_patch(
                groups.MACHINE,
                machine.namespace,
                machine.name,
                {"metadata": {"annotations": annotations}},
            )
        except ApiError as error:
            if not error.not_found:
                raise

    def _pre_terminate(self, scope: Scope) -> None:
        step = pre_terminate_step(
            scope.machines, scope.etcd, scope.health.machines if scope.health else {}
        )
        if step.action == "none":
            return
        machine = next(m for m in scope.machines if m.name == step.machine)
        scope.requeue_in(self.options.waiting_requeue)
        if step.action == "wait":
            if step.held_by:
                _log.info(
                    "Holding the pre-terminate hook", machine=machine.name, reason=step.reason
                )
                self._say(scope, step)
            else:
                _log.debug("Waiting to run the pre-terminate hook", reason=step.reason)
            return
        if step.action == "remove" and step.member is not None:
            if not self._remove_member_of(scope, machine, step.member):
                return
        else:
            _log.info("Releasing the pre-terminate hook", machine=machine.name, reason=step.reason)
        self.release_hook(machine)

    def _remove_member_of(self, scope: Scope, machine: MachineView, member: Member) -> bool:
        assert scope.workload is not None and scope.etcd is not None
        try:
            moved_to = forward_leadership(
                scope.workload, scope.endpoints, scope.etcd, machine, scope.machines
            )
            self._remove(scope, scope.etcd, member)
        except (EtcdError, NotConnected) as error:
            self.recorder.warning(
                scope.kcp,
                "FailedEtcdMemberRemoval",
                f"Failed to remove the etcd member of Machine {machine.name}: {error}",
            )
            return False
        moved = f"; etcd leadership moved to {moved_to}" if moved_to else ""
        self.recorder.normal(
            scope.kcp,
            "EtcdMemberRemoved",
            f"Removed etcd member {member.name} of Machine {machine.name}{moved}",
        )
        _log.info(
            "Removed etcd member",
            member=member.name,
            machine=machine.name,
            leader_moved_to=moved_to,
        )
        return True

    def _remove(self, scope: Scope, etcd: EtcdClusterStatus, member: Member) -> None:
        assert scope.workload is not None
        health = etcd.by_id(member.id)
        scope.workload.remove_member(
            scope.endpoints, member.id, avoid=health.endpoint if health and health.endpoint else ""
        )

    def _say(self, scope: Scope, step: HookStep) -> None:
        """Put what holds a deletion into the condition that covers it."""
        kind = (
            c.ETCD_CLUSTER_HEALTHY if step.held_by == "etcd" else c.CONTROL_PLANE_COMPONENTS_HEALTHY
        )
        self._add_line(scope, kind, step.reason)

    def _add_line(self, scope: Scope, kind: str, line: str) -> None:
        health = scope.health
        if health is None:
            return
        current = health.etcd_cluster if kind == c.ETCD_CLUSTER_HEALTHY else health.components
        message = "\n".join(x for x in (current.message, f"* {line}") if x)
        held = Condition.false(kind, c.NOT_HEALTHY_REASON, message)
        if kind == c.ETCD_CLUSTER_HEALTHY:
            scope.health = dataclasses.replace(health, etcd_cluster=held)
        else:
            scope.health = dataclasses.replace(health, components=held)

    # -- members without Machines --------------------------------------------------------

    def _unbacked(self, scope: Scope) -> bool:
        health = scope.health
        step = unbacked_member_step(
            scope.machines,
            scope.etcd,
            etcd_cluster_healthy=health is not None and health.etcd_cluster.is_true,
        )
        if step.action == "none":
            return False
        if step.action == "wait":
            _log.debug("Etcd members without Machines left for now", reason=step.reason)
            return False
        assert step.member is not None and scope.etcd is not None
        if step.action == "hold":
            _log.warning("Etcd member without a Machine kept", reason=step.reason)
            self._add_line(scope, c.ETCD_CLUSTER_HEALTHY, step.reason)
            self.recorder.warning(scope.kcp, "EtcdMemberRemovalBlocked", step.reason)
            scope.requeue_in(self.options.waiting_requeue)
            return True
        label = member_label(step.member)
        try:
            self._remove(scope, scope.etcd, step.member)
        except (EtcdError, NotConnected) as error:
            self.recorder.warning(
                scope.kcp,
                "FailedEtcdMemberRemoval",
                f"Failed to remove etcd member {label}, which no Machine backs: {error}",
            )
            scope.requeue_in(self.options.waiting_requeue)
            return True
        self.recorder.normal(
            scope.kcp,
            "EtcdMemberRemoved",
            f"Removed etcd member {label}, which no Machine backs",
        )
        _log.info("Removed etcd member without a Machine", member=label)
        scope.requeue_in(UNBACKED_REQUEUE)
        return True
