"""The steps that change a control plane: create a Machine, delete one.

Each step is one of Cluster API's: at most one Machine created or deleted per
reconcile, and the decision of which comes from `kcp.controlplane.scaling`.
A Machine is deleted only if the etcd members left would keep quorum, after
etcd leadership has moved off its member; the member itself goes later, from
the pre-terminate hook once core has drained the Machine
(`kcp.controlplane.membership`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import MachineView
from kcp.controlplane.machines import MachineTemplateError, create_machine
from kcp.controlplane.membership import forward_leadership
from kcp.controlplane.scaling import Action, Decision, MachineState, can_remove_member
from kcp.controlplane.scope import Scope, Services, Step
from kcp.controlplane.workload import NotConnected
from kcp.etcd import EtcdError
from kcp.rest import ApiError
from kcp.runtime.logging import get_logger

__all__ = ["Operations"]

_log = get_logger("kcp.controlplane.reconciler")

_POD_HEALTH = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
)


class Operations(Step):
    """Scale up, scale down and roll out, one Machine at a time."""

    def __init__(
        self, services: Services, *, create_interrupted: Callable[[str], None] = lambda _: None
    ) -> None:
        super().__init__(services)
        self._create_interrupted = create_interrupted
        """Told the control plane's UID when a Machine's creation failed part way: what it
        created before the failure is an orphan to look for."""

    # -- decisions and actions --------------------------------------------------------

    def states(self, scope: Scope) -> list[MachineState]:
        states: list[MachineState] = []
        health = scope.health
        for machine in scope.machines:
            problems: list[str] = []
            components_unhealthy = False
            conditions = health.machines.get(machine.name, ()) if health else ()
            if machine.node_name is not None:
                if not conditions:
                    problems.append(f"Machine {machine.name} health is not known yet")
                for condition in conditions:
                    if condition.is_true:
                        continue
                    state = "false" if condition.status == c.FALSE else "unknown"
                    detail = f" ({condition.message})" if condition.message else ""
                    problems.append(
                        f"Machine {machine.name} reports {condition.type} condition is "
                        f"{state}{detail}"
                    )
                    if condition.type in _POD_HEALTH:
                        components_unhealthy = True
            result = scope.up_to_date.get(machine.name)
            states.append(
                MachineState(
                    name=machine.name,
                    created=machine.creation_timestamp,
                    failure_domain=machine.failure_domain,
                    deleting=machine.is_deleting,
                    up_to_date=result.up_to_date if result is not None else True,
                    delete_requested=labels.DELETE_MACHINE_ANNOTATION in machine.annotations,
                    has_node=machine.node_name is not None,
                    problems=tuple(problems),
                    components_unhealthy=components_unhealthy,
                )
            )
        return states

    def act(self, scope: Scope, decision: Decision) -> None:
        if decision.action.creates_machine:
            self._create(scope, decision)
        elif decision.action == Action.SCALE_DOWN and decision.machine is not None:
            self._scale_down(scope, decision)
        elif decision.action == Action.WAIT:
            _log.info(
                "Waiting for control plane to pass preflight checks",
                reason=decision.reason,
                blocked=list(decision.blocked),
            )
            if decision.blocked and not decision.waits_for_deletion:
                self.recorder.warning(
                    scope.kcp,
                    "ControlPlaneUnhealthy",
                    "Waiting for control plane to pass preflight checks to continue "
                    f"reconciliation: {'; '.join(decision.blocked)}",
                )
            scope.requeue_in(self.options.waiting_requeue)

    def _create(self, scope: Scope, decision: Decision) -> None:
        view = scope.view
        init = decision.action == Action.INIT
        try:
            try:
                created = create_machine(
                    self.kube,
                    view,
                    scope.cluster,
                    init=init,
                    failure_domain=decision.failure_domain,
                )
            except BaseException:
                self._create_interrupted(view.uid)
                raise
        except MachineTemplateError as error:
            self._user_error(
                scope, "FailedInitialization" if init else "FailedScaleUp", [str(error)]
            )
            blocked = (str(error),)
            scope.decision = Decision(Action.WAIT, decision.reason, blocked=blocked)
            return
        except ApiError as error:
            reason = "FailedInitialization" if init else "FailedScaleUp"
            self.recorder.warning(
                scope.kcp, reason, f"Failed to create a control plane Machine: {error}"
            )
            raise
        self.expectations.expect_creation(view.uid, created.name)
        where = f" in failure domain {created.failure_domain}" if created.failure_domain else ""
        if init:
            reason, message = (
                "ControlPlaneInitializing",
                f"Created Machine {created.name}{where} to initialize the control plane",
            )
        elif decision.rollout:
            reason, message = (
                "RollingOut",
                f"Created Machine {created.name}{where} to replace outdated Machines",
            )
        else:
            reason, message = (
                "ScalingUp",
                f"Created Machine {created.name}{where} ({decision.reason})",
            )
        self.recorder.normal(scope.kcp, reason, message)
        _log.info("Machine created", machine=created.name, reason=decision.reason)
        scope.requeue_in(self.options.waiting_requeue)

    def _scale_down(self, scope: Scope, decision: Decision) -> None:
        machine = next(m for m in scope.machines if m.name == decision.machine)
        if machine.node_name is not None:
            if scope.workload is None or scope.etcd is None:
                scope.decision = Decision(
                    Action.WAIT,
                    decision.reason,
                    machine=machine.name,
                    blocked=("etcd cannot be reached to move its leadership away first",),
                )
                scope.requeue_in(self.options.waiting_requeue)
                return
            ok, why = can_remove_member(scope.etcd, machine.node_name)
            if not ok:
                scope.decision = Decision(
                    Action.WAIT, decision.reason, machine=machine.name, blocked=(why,)
                )
                scope.requeue_in(self.options.waiting_requeue)
                return
            try:
                moved_to = forward_leadership(
                    scope.workload, scope.endpoints, scope.etcd, machine, scope.machines
                )
            except (EtcdError, NotConnected) as error:
                self.recorder.warning(
                    scope.kcp,
                    "FailedScaleDown",
                    f"Failed to move etcd leadership away from Machine {machine.name}: {error}",
                )
                scope.requeue_in(self.options.waiting_requeue)
                return
            if moved_to:
                _log.info("Moved etcd leadership", machine=machine.name, leader=moved_to)
        try:
            self.kube.delete(groups.MACHINE, machine.namespace, machine.name, uid=machine.uid)
        except ApiError as error:
            self.recorder.warning(
                scope.kcp,
                "FailedScaleDown",
                f"Failed to delete control plane Machine {machine.name}: {error}",
            )
            raise
        self.expectations.expect_deletion(scope.view.uid, machine.name)
        if decision.rollout:
            detail = scope.up_to_date.get(machine.name)
            why = f": {', '.join(detail.reasons)}" if detail and detail.reasons else ""
            self.recorder.normal(
                scope.kcp, "RollingOut", f"Deleting outdated Machine {machine.name}{why}"
            )
        else:
            self.recorder.normal(
                scope.kcp, "ScalingDown", f"Deleting Machine {machine.name} ({decision.reason})"
            )
        _log.info("Machine deleting", machine=machine.name, reason=decision.reason)
        marked = copy.deepcopy(dict(machine.raw))
        marked.setdefault("metadata", {})["deletionTimestamp"] = scope.now.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        scope.machines = [
            MachineView(marked) if m.name == machine.name else m for m in scope.machines
        ]
        scope.requeue_in(self.options.waiting_requeue)
