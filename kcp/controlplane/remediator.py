"""Remediating unhealthy control-plane Machines: acting on `kcp.controlplane.remediation`.

A Machine a MachineHealthCheck handed to KCP is deleted (after etcd leadership
moved off its member); its etcd member goes later from the pre-terminate hook,
and the normal scale up creates the replacement, which carries the
`remediation-for` annotation so that retries are counted. While the
replacement does not exist, the KubeadmControlPlane carries the
`remediation-in-progress` annotation. Why a Machine is not remediated goes to
its `OwnerRemediated` condition (and from there to the KCP's `Remediating`),
and a refusal for safety or retry limits is also a Warning Event.
"""

from __future__ import annotations

import copy
from typing import Any

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import MachineView
from kcp.controlplane.condition import Condition
from kcp.controlplane.membership import forward_leadership
from kcp.controlplane.remediation import (
    RemediationStep,
    needs_cleanup,
    plan_remediation,
    replacement_problems,
)
from kcp.controlplane.remediation_retries import RemediationSettings, stale_in_progress
from kcp.controlplane.scope import Scope, Step
from kcp.controlplane.status import write_conditions
from kcp.controlplane.workload import NotConnected
from kcp.etcd import EtcdError
from kcp.rest import ApiError
from kcp.runtime.logging import get_logger

__all__ = ["Remediator"]

_log = get_logger("kcp.controlplane.reconciler")

_INTERNAL_ERROR_REASON = c.INTERNAL_ERROR_REASON


class Remediator(Step):
    """One remediation step per reconcile, as Cluster API's KCP takes it."""

    def reconcile(self, scope: Scope) -> bool:
        """Remediate if it is time; True when a Machine was deleted and the reconcile stops."""
        if not scope.machines:
            return False
        self._cleanup(scope)
        self._drop_stale_annotation(scope)
        health = scope.health
        step = plan_remediation(
            machines=scope.machines,
            kcp_annotations=scope.view.annotations,
            initialized=scope.initialized,
            settings=RemediationSettings.from_spec(scope.kcp),
            now=scope.now,
            etcd=scope.etcd,
            health=health.machines if health is not None else {},
            nodes_known=scope.nodes_known,
        )
        if step.action == "none" or step.machine is None:
            return False
        if step.action == "wait":
            if step.reason:
                self._refuse(scope, step)
            return False
        return self._remediate(scope, step)

    def replacement_preflight(self, scope: Scope) -> tuple[str, ...] | None:
        """The relaxed checks for a remediated Machine's replacement (None: no remediation)."""
        if labels.REMEDIATION_IN_PROGRESS_ANNOTATION not in scope.view.annotations:
            return None
        health = scope.health
        return replacement_problems(
            scope.machines, scope.etcd, health.machines if health is not None else {}
        )

    def replacement_created(self, scope: Scope) -> None:
        """The replacement exists: the remediation is no longer in progress."""
        self._set_in_progress(scope, None)

    # -- steps ----------------------------------------------------------------------------

    def _cleanup(self, scope: Scope) -> None:
        """Machines healthy again lose the OwnerRemediated=False KCP or the MHC left."""
        for index, machine in enumerate(scope.machines):
            if not needs_cleanup(machine):
                continue
            written = self._remove_condition(machine, c.OWNER_REMEDIATED)
            if written is not None:
                scope.machines[index] = MachineView(written)
                _log.info("Machine healthy again: OwnerRemediated removed", machine=machine.name)

    def _drop_stale_annotation(self, scope: Scope) -> None:
        if stale_in_progress(scope.view.annotations, scope.machines):
            _log.info("Dropping a stale remediation-in-progress annotation")
            self._set_in_progress(scope, None)

    def _refuse(self, scope: Scope, step: RemediationStep) -> None:
        assert step.machine is not None
        self._owner_remediated(scope, step.machine, step.reason, step.message)
        _log.info(
            "A control plane Machine needs remediation, but not now",
            machine=step.machine.name,
            reason=step.reason,
            why=step.message,
        )
        if step.blocked_by_safety or step.reason != c.OWNER_REMEDIATED_DEFERRED_REASON:
            # A stable message: repeats add to one Event's count.
            name = step.machine.name
            message = step.message if name in step.message else f"Machine {name}: {step.message}"
            self.recorder.warning(scope.kcp, "RemediationBlocked", message)

    def _remediate(self, scope: Scope, step: RemediationStep) -> bool:
        machine = step.machine
        assert machine is not None and step.data is not None
        if scope.initialized and machine.node_name and scope.workload and scope.etcd:
            try:
                moved_to = forward_leadership(
                    scope.workload, scope.endpoints, scope.etcd, machine, scope.machines
                )
            except (EtcdError, NotConnected) as error:
                self._owner_remediated(
                    scope,
                    machine,
                    _INTERNAL_ERROR_REASON,
                    f"Failed to move etcd leadership away before remediation: {error}",
                )
                self.recorder.warning(
                    scope.kcp,
                    "FailedRemediation",
                    f"Failed to move etcd leadership away from Machine {machine.name}: {error}",
                )
                scope.requeue_in(self.options.waiting_requeue)
                return True
            if moved_to:
                _log.info("Moved etcd leadership", machine=machine.name, leader=moved_to)
        # Said before the delete: once deleting, core rewrites the Machine's status often.
        self._owner_remediated(
            scope, machine, c.OWNER_REMEDIATED_MACHINE_DELETING_REASON, "Machine is deleting"
        )
        try:
            self.kube.delete(groups.MACHINE, machine.namespace, machine.name, uid=machine.uid)
        except ApiError as error:
            if not error.not_found:
                self._owner_remediated(
                    scope,
                    machine,
                    _INTERNAL_ERROR_REASON,
                    "Please check controller logs for errors",
                )
                self.recorder.warning(
                    scope.kcp,
                    "FailedRemediation",
                    f"Failed to delete unhealthy Machine {machine.name}: {error}",
                )
                raise
        self.expectations.expect_deletion(scope.view.uid, machine.name)
        self._set_in_progress(scope, step.data.to_annotation())
        retry = f" (retry {step.data.retry_count})" if step.data.retry_count else ""
        self.recorder.normal(
            scope.kcp,
            "MachineRemediation",
            f"Deleting unhealthy Machine {machine.name} to replace it{retry}",
        )
        _log.info(
            "Deleting Machine (remediating unhealthy Machine)",
            machine=machine.name,
            retry_count=step.data.retry_count,
        )
        marked = copy.deepcopy(dict(next(m for m in scope.machines if m.name == machine.name).raw))
        marked.setdefault("metadata", {})["deletionTimestamp"] = c.rfc3339(scope.now)
        scope.machines = [
            MachineView(marked) if m.name == machine.name else m for m in scope.machines
        ]
        scope.requeue_in(self.options.waiting_requeue)
        return True

    # -- writes ---------------------------------------------------------------------------

    def _owner_remediated(
        self, scope: Scope, machine: MachineView, reason: str, message: str
    ) -> None:
        for index, current in enumerate(scope.machines):
            if current.name != machine.name:
                continue
            try:
                written = write_conditions(
                    self.kube,
                    groups.MACHINE,
                    current.raw,
                    [Condition.false(c.OWNER_REMEDIATED, reason, message)],
                    now=scope.now,
                )
            except ApiError as error:
                _log.warning("OwnerRemediated not written", machine=machine.name, error=str(error))
                return
            scope.machines[index] = MachineView(written)
            return

    def _remove_condition(self, machine: MachineView, condition_type: str) -> Any:
        """The Machine without the condition (None: not written, the next reconcile retries)."""
        status = machine.raw.get("status") or {}
        conditions = [
            x
            for x in status.get("conditions") or []
            if not (isinstance(x, dict) and x.get("type") == condition_type)
        ]
        patch = {
            "metadata": {"resourceVersion": machine.resource_version},
            "status": {"conditions": conditions},
        }
        try:
            return self.kube.merge_patch(
                groups.MACHINE, machine.namespace, machine.name, patch, subresource="status"
            )
        except ApiError as error:
            _log.debug("Condition not removed", machine=machine.name, error=str(error))
            return None

    def _set_in_progress(self, scope: Scope, value: str | None) -> None:
        """Set (or remove, with None) the KCP's remediation-in-progress annotation."""
        key = labels.REMEDIATION_IN_PROGRESS_ANNOTATION
        if scope.view.annotations.get(key) == value:
            return
        try:
            written = self.kube.merge_patch(
                groups.KUBEADM_CONTROL_PLANE,
                scope.view.namespace,
                scope.view.name,
                {"metadata": {"annotations": {key: value}}},
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
        # Every view of this reconcile shares the dict: status is written from the fresh one.
        scope.kcp.clear()
        scope.kcp.update(copy.deepcopy(dict(written)))
