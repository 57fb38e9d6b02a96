"""Health of a control plane, from what its workload cluster and its etcd report.

Pure functions: they take the Nodes and control-plane Pods read from the
workload API server and the etcd cluster status read through the tracker, and
compute the per-Machine conditions (`APIServerPodHealthy`,
`ControllerManagerPodHealthy`, `SchedulerPodHealthy`, `EtcdPodHealthy`,
`EtcdMemberHealthy`) and the KubeadmControlPlane's `EtcdClusterHealthy` and
`ControlPlaneComponentsHealthy`, with Cluster API's reasons and messages.
`EtcdClusterHealthy` and the quorum count (`EtcdVotes`) cover every member
etcd lists, not only those a Machine backs: a stale member still votes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kcp.api import conditions as c
from kcp.api.objects import MachineView
from kcp.controlplane.condition import Condition
from kcp.etcd import EtcdClusterStatus, Member

__all__ = [
    "COMPONENTS",
    "ControlPlaneHealth",
    "EtcdVotes",
    "components_condition",
    "etcd_cluster_condition",
    "etcd_votes",
    "machine_health",
    "pod_condition",
]

COMPONENTS: tuple[tuple[str, str], ...] = (
    ("kube-apiserver", c.API_SERVER_POD_HEALTHY),
    ("kube-controller-manager", c.CONTROLLER_MANAGER_POD_HEALTHY),
    ("kube-scheduler", c.SCHEDULER_POD_HEALTHY),
    ("etcd", c.ETCD_POD_HEALTHY),
)
"""Static Pod name prefix (`<component>-<node>` in kube-system) and the condition it drives."""

POD_CONDITION_TYPES = tuple(condition for _, condition in COMPONENTS)


def _conditions(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    status = (obj or {}).get("status") or {}
    return [x for x in status.get("conditions") or [] if isinstance(x, Mapping)]


def _status_of(obj: Mapping[str, Any] | None, condition_type: str) -> str:
    for condition in _conditions(obj):
        if condition.get("type") == condition_type:
            return str(condition.get("status") or c.UNKNOWN)
    return c.UNKNOWN


def pod_condition(condition_type: str, pod: Mapping[str, Any] | None) -> Condition:
    """The condition of one static Pod, as Cluster API reads the kubelet's report of it."""
    if pod is None:
        return Condition.false(condition_type, c.POD_DOES_NOT_EXIST_REASON, "Pod does not exist")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return Condition.false(condition_type, c.POD_DELETING_REASON, "Pod is being deleted")
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Pending":
        if _status_of(pod, "PodScheduled") != c.TRUE:
            return Condition.false(
                condition_type, c.POD_PROVISIONING_REASON, "Waiting to be scheduled"
            )
        if _status_of(pod, "Initialized") != c.TRUE:
            return Condition.false(
                condition_type, c.POD_PROVISIONING_REASON, "Running init containers"
            )
        return Condition.false(condition_type, c.POD_PROVISIONING_REASON, "Pod is pending")
    if phase == "Running":
        if _status_of(pod, "Ready") == c.TRUE:
            return Condition.true(condition_type, c.POD_RUNNING_REASON)
        return _running_not_ready(condition_type, status)
    if phase in ("Succeeded", "Failed"):
        return Condition.false(
            condition_type, c.POD_FAILED_REASON, "All the containers have been terminated"
        )
    return Condition.unknown(
        condition_type, c.INSPECTION_FAILED_REASON, "Pod is reporting Unknown status"
    )


def _running_not_ready(condition_type: str, status: Mapping[str, Any]) -> Condition:
    waiting: list[str] = []
    terminated: list[str] = []
    crashed = False
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        if last.get("exitCode", 0) != 0:
            crashed = True
        if "waiting" in state:
            waiting.append(str((state["waiting"] or {}).get("reason") or "Waiting"))
        if "terminated" in state:
            terminated.append(str((state["terminated"] or {}).get("reason") or "Terminated"))
    if waiting:
        reason = c.POD_FAILED_REASON if crashed else c.POD_PROVISIONING_REASON
        return Condition.false(condition_type, reason, ", ".join(waiting))
    if terminated:
        return Condition.false(condition_type, c.POD_FAILED_REASON, ", ".join(terminated))
    return Condition.false(
        condition_type, c.POD_PROVISIONING_REASON, "Waiting for startup or readiness probes"
    )


@dataclass(frozen=True)
class EtcdVotes:
    """Every member etcd lists, counted as its quorum counts them, Machine or no Machine."""

    voting: int
    healthy: int
    """Voting members that answered without a problem."""
    learners: int
    """Learners and members added but not started yet: they do not vote."""
    unhealthy: tuple[str, ...] = ()
    """Names of the voting members that are not healthy."""
    unbacked: tuple[str, ...] = ()
    """Members no Machine backs, while no Machine is provisioning (that could be its member)."""


@dataclass(frozen=True)
class ControlPlaneHealth:
    """Per-Machine conditions (by Machine name) and the two KCP-level conditions."""

    machines: Mapping[str, tuple[Condition, ...]]
    etcd_cluster: Condition
    components: Condition
    etcd_members_match: bool
    """Every etcd member belongs to a Machine and every Machine with a Node has a member."""
    etcd_votes: EtcdVotes | None = None
    """None when etcd did not list its members."""


def _all(
    condition_types: Sequence[str], status: str, reason: str, message: str
) -> tuple[Condition, ...]:
    return tuple(Condition(t, status, reason, message) for t in condition_types)


def _node_ready(node: Mapping[str, Any]) -> str:
    return _status_of(node, "Ready")


def _pod_conditions(
    machine: MachineView,
    nodes: Mapping[str, Mapping[str, Any]] | None,
    pods: Mapping[str, Mapping[str, Any]],
    workload_error: str | None,
    workload_reason: str,
) -> tuple[Condition, ...]:
    node_name = machine.node_name
    if machine.is_deleting:
        return _all(POD_CONDITION_TYPES, c.FALSE, c.POD_DELETING_REASON, "Machine is deleting")
    if node_name is None:
        return _all(
            POD_CONDITION_TYPES,
            c.UNKNOWN,
            c.INSPECTION_FAILED_REASON,
            "Waiting for the Machine to report its Node (status.nodeRef)",
        )
    if nodes is None:
        return _all(
            POD_CONDITION_TYPES,
            c.UNKNOWN,
            workload_reason,
            f"Failed to read the workload cluster: {workload_error or 'not connected'}",
        )
    node = nodes.get(node_name)
    if node is None:
        return _all(
            POD_CONDITION_TYPES,
            c.UNKNOWN,
            c.INSPECTION_FAILED_REASON,
            f"Node {node_name} does not exist",
        )
    if _node_ready(node) == c.UNKNOWN:
        return _all(
            POD_CONDITION_TYPES,
            c.UNKNOWN,
            c.INSPECTION_FAILED_REASON,
            "Node Ready condition is Unknown, Pod data might be stale",
        )
    return tuple(
        pod_condition(condition_type, pods.get(f"{component}-{node_name}"))
        for component, condition_type in COMPONENTS
    )


def _member_names(etcd: EtcdClusterStatus) -> str:
    return ", ".join(sorted(m.name or f"{m.id:x}" for m in etcd.members))


def _etcd_member_condition(
    machine: MachineView,
    etcd: EtcdClusterStatus | None,
    etcd_error: str | None,
    etcd_reason: str,
    endpoints: Sequence[str],
) -> Condition:
    kind = c.ETCD_MEMBER_HEALTHY
    if machine.is_deleting:
        return Condition.false(kind, c.POD_DELETING_REASON, "Machine is deleting")
    node_name = machine.node_name
    if node_name is None:
        return Condition.unknown(
            kind,
            c.INSPECTION_FAILED_REASON,
            "Waiting for the Machine to report its Node (status.nodeRef)",
        )
    if etcd is None:
        return Condition.unknown(
            kind, etcd_reason, f"Failed to connect to etcd: {etcd_error or 'not connected'}"
        )
    if not etcd.members:
        silent = [h for h in etcd.health if h.endpoint in endpoints and not h.reachable]
        if silent:
            # The cluster was reached, this Machine's member was asked and did not answer.
            return Condition.false(
                kind,
                c.NOT_HEALTHY_REASON,
                f"Etcd member {node_name} (Machine {machine.name}) is not healthy: "
                + "; ".join(e for h in silent for e in h.errors),
            )
        detail = "; ".join(etcd.errors) or "no member answered"
        return Condition.unknown(
            kind, c.INSPECTION_FAILED_REASON, f"Failed to get etcd members: {detail}"
        )
    member = etcd.member(node_name)
    if member is None:
        return Condition.false(
            kind,
            c.NOT_HEALTHY_REASON,
            f"Etcd reports the cluster is composed by [{_member_names(etcd)}], but the etcd "
            f"member hosted on Machine {machine.name} ({node_name}) is not included",
        )
    if member.status is not None and member.status.is_learner:
        return Condition.false(
            kind, c.NOT_HEALTHY_REASON, "Waiting for learner etcd member to be promoted"
        )
    if member.alarms:
        return Condition.false(
            kind, c.NOT_HEALTHY_REASON, f"Etcd reports alarms: {', '.join(member.alarms)}"
        )
    if member.errors:
        return Condition.false(
            kind,
            c.NOT_HEALTHY_REASON,
            f"Etcd member {member.name} is not healthy: {'; '.join(member.errors)}",
        )
    return Condition.true(kind, c.HEALTHY_REASON)


def machine_health(
    machines: Sequence[MachineView],
    nodes: Mapping[str, Mapping[str, Any]] | None,
    pods: Mapping[str, Mapping[str, Any]],
    etcd: EtcdClusterStatus | None,
    *,
    workload_error: str | None = None,
    workload_reason: str = c.INSPECTION_FAILED_REASON,
    etcd_error: str | None = None,
    etcd_reason: str = c.INSPECTION_FAILED_REASON,
    etcd_endpoints: Mapping[str, Sequence[str]] | None = None,
) -> ControlPlaneHealth:
    """Every per-Machine condition, and the KCP conditions aggregated from them.

    `nodes` is None when the workload API server could not be read
    (`workload_error` says why); `etcd` is None when etcd could not be asked
    (`etcd_error`). `pods` are the kube-system Pods by name; `etcd_endpoints`
    the `host:port` endpoints of each Machine's etcd member.
    """
    per_machine: dict[str, tuple[Condition, ...]] = {}
    for machine in machines:
        per_machine[machine.name] = (
            *_pod_conditions(machine, nodes, pods, workload_error, workload_reason),
            _etcd_member_condition(
                machine,
                etcd,
                etcd_error,
                etcd_reason,
                (etcd_endpoints or {}).get(machine.name, ()),
            ),
        )
    cluster_errors: list[str] = []
    matching = True
    votes: EtcdVotes | None = None
    if etcd is not None and etcd.members:
        votes = etcd_votes(machines, etcd)
        cluster_errors.extend(_member_errors(machines, etcd))
        node_names = {m.node_name for m in machines if m.node_name}
        matching = not any(m.name and m.name not in node_names for m in etcd.members)
        member_names = {m.name for m in etcd.members}
        if any(
            m.node_name and m.node_name not in member_names for m in machines if not m.is_deleting
        ):
            matching = False
        cluster_errors.extend(etcd.errors)
    elif etcd is None or not etcd.members:
        matching = False
    # Machines on their way out say "deleting"; that is no news about the control plane.
    staying = {m.name: per_machine[m.name] for m in machines if not m.is_deleting}
    return ControlPlaneHealth(
        machines=per_machine,
        etcd_cluster=etcd_cluster_condition(staying, cluster_errors, etcd_error, etcd_reason),
        components=components_condition(staying, workload_error, workload_reason),
        etcd_members_match=matching,
        etcd_votes=votes,
    )


def _member_label(member: Member) -> str:
    return member.name or f"{member.id:x} (name not yet assigned)"


def _member_errors(machines: Sequence[MachineView], etcd: EtcdClusterStatus) -> list[str]:
    """Lines about members the per-Machine conditions do not cover: those no Machine backs,
    and those of Machines being deleted, which still vote until they are removed."""
    by_node = {m.node_name: m for m in machines if m.node_name}
    # A Machine still provisioning may own a member that joined before its Node did.
    provisioning = any(m.node_name is None for m in machines if not m.is_deleting)
    lines: list[str] = []
    for member in etcd.members:
        health = etcd.by_id(member.id)
        problems = "; ".join(health.errors) if health is not None and not health.healthy else ""
        machine = by_node.get(member.name) if member.name else None
        if machine is None:
            if not provisioning:
                detail = f" and is not healthy: {problems}" if problems else ""
                lines.append(
                    f"Etcd member {_member_label(member)} does not have a corresponding "
                    f"Machine{detail}"
                )
            elif member.started and problems:
                # Named, so it started once: a joiner that failed, or one left behind.
                lines.append(
                    f"Etcd member {member.name} does not have a corresponding Machine and is "
                    f"not healthy: {problems}"
                )
        elif machine.is_deleting and problems:
            lines.append(
                f"Etcd member {member.name} of Machine {machine.name} (being deleted) still "
                f"votes and is not healthy: {problems}"
            )
    return lines


def etcd_votes(machines: Sequence[MachineView], etcd: EtcdClusterStatus) -> EtcdVotes:
    """Count every listed member: a stale member without a Machine still weighs on quorum."""
    node_names = {m.node_name for m in machines if m.node_name}
    provisioning = any(m.node_name is None for m in machines if not m.is_deleting)
    voting = [m for m in etcd.members if m.started and not m.is_learner]
    healthy_ids = {h.member_id for h in etcd.health if h.healthy}
    return EtcdVotes(
        voting=len(voting),
        healthy=sum(1 for m in voting if m.id in healthy_ids),
        learners=len(etcd.members) - len(voting),
        unhealthy=tuple(sorted(m.name for m in voting if m.id not in healthy_ids)),
        unbacked=()
        if provisioning
        else tuple(sorted(_member_label(m) for m in etcd.members if m.name not in node_names)),
    )


def _aggregate(
    per_machine: Mapping[str, Sequence[Condition]],
    condition_types: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Lines naming Machines with a False, and with an Unknown, condition of `condition_types`."""
    false_lines: list[str] = []
    unknown_lines: list[str] = []
    for name in sorted(per_machine):
        for condition in per_machine[name]:
            if condition.type not in condition_types or condition.is_true:
                continue
            detail = f" {condition.message}" if condition.message else f" ({condition.reason})"
            line = f"* Machine {name}: {condition.type}:{detail}"
            (false_lines if condition.status == c.FALSE else unknown_lines).append(line)
    return false_lines, unknown_lines


def etcd_cluster_condition(
    per_machine: Mapping[str, Sequence[Condition]],
    cluster_errors: Sequence[str],
    etcd_error: str | None = None,
    etcd_reason: str = c.INSPECTION_FAILED_REASON,
) -> Condition:
    """`EtcdClusterHealthy`: True only when every member and every Machine's member is healthy."""
    kind = c.ETCD_CLUSTER_HEALTHY
    if not per_machine and etcd_error is None and not cluster_errors:
        return Condition.unknown(
            kind, c.HEALTH_UNKNOWN_REASON, "No Machines reporting etcd member status"
        )
    false_lines, unknown_lines = _aggregate(per_machine, (c.ETCD_MEMBER_HEALTHY,))
    lines = [f"* {error}" for error in cluster_errors] + false_lines
    if lines:
        return Condition.false(kind, c.NOT_HEALTHY_REASON, "\n".join(lines + unknown_lines))
    if etcd_error is not None:
        return Condition.unknown(kind, etcd_reason, f"Failed to connect to etcd: {etcd_error}")
    if unknown_lines:
        return Condition.unknown(kind, c.HEALTH_UNKNOWN_REASON, "\n".join(unknown_lines))
    return Condition.true(kind, c.HEALTHY_REASON)


def components_condition(
    per_machine: Mapping[str, Sequence[Condition]],
    workload_error: str | None = None,
    workload_reason: str = c.INSPECTION_FAILED_REASON,
) -> Condition:
    """`ControlPlaneComponentsHealthy`, aggregated from the four static Pod conditions."""
    kind = c.CONTROL_PLANE_COMPONENTS_HEALTHY
    if not per_machine and workload_error is None:
        return Condition.unknown(
            kind, c.HEALTH_UNKNOWN_REASON, "No Machines reporting control plane status"
        )
    false_lines, unknown_lines = _aggregate(per_machine, POD_CONDITION_TYPES)
    if false_lines:
        return Condition.false(kind, c.NOT_HEALTHY_REASON, "\n".join(false_lines + unknown_lines))
    if workload_error is not None:
        return Condition.unknown(
            kind, workload_reason, f"Failed to read the workload cluster: {workload_error}"
        )
    if unknown_lines:
        return Condition.unknown(kind, c.HEALTH_UNKNOWN_REASON, "\n".join(unknown_lines))
    return Condition.true(kind, c.HEALTHY_REASON)
