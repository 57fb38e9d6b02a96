"""The KubeadmControlPlane's status: computed from what a reconcile saw, written by a merge patch.

`compute_status` is pure, from the reconcile's `Scope`: replica counts, version,
selector, initialization and every v1beta2 condition with Cluster API's reasons and
messages. `write_conditions`
patches only the fields kcp owns into the status subresource, merging our
conditions into the object's list so that another writer's conditions survive;
the patch carries the resourceVersion it was computed from, so a concurrent
write is detected (409) and the merge is redone on the fresh object: the
informer cache's, once it shows a version other than the one that failed
(it usually has the write that won by the time the 409 comes back), else one
read live.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import MachineView
from kcp.controlplane.condition import Condition, merge_conditions
from kcp.controlplane.remediation import remediating_condition
from kcp.controlplane.remediation_retries import last_remediation
from kcp.controlplane.rollout import UpToDate
from kcp.controlplane.scaling import Action, Decision, quorum
from kcp.controlplane.scope import Scope
from kcp.rest import ApiError, Kube, Resource

__all__ = [
    "compute_status",
    "lowest_version",
    "machine_is_available",
    "machine_is_ready",
    "write_conditions",
]

_MAX_WRITE_ATTEMPTS = 4
CACHE_CATCH_UP = 0.25
"""Seconds a write that lost a race waits for the cache to show the winner before reading
the object live."""
_CACHE_POLL = 0.02
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def _version_key(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(version)
    if match is None:
        return (1 << 30, 0, 0)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def lowest_version(machines: Sequence[MachineView]) -> str | None:
    """The lowest Kubernetes version among the Machines (what `status.version` reports)."""
    versions = [m.version for m in machines if m.version]
    return min(versions, key=_version_key) if versions else None


def _condition_status(machine: MachineView, condition_type: str) -> str | None:
    condition = c.find_condition(machine.conditions, condition_type)
    return None if condition is None else str(condition.get("status"))


def machine_is_ready(machine: MachineView) -> bool:
    """The Machine's `Ready` condition; without one, a Node and every kcp health gate True."""
    status = _condition_status(machine, c.READY)
    if status is not None:
        return status == c.TRUE
    return machine.node_name is not None and all(
        _condition_status(machine, t) == c.TRUE
        for t in (
            c.API_SERVER_POD_HEALTHY,
            c.CONTROLLER_MANAGER_POD_HEALTHY,
            c.SCHEDULER_POD_HEALTHY,
            c.ETCD_POD_HEALTHY,
            c.ETCD_MEMBER_HEALTHY,
        )
    )


def machine_is_available(machine: MachineView) -> bool:
    """The Machine's `Available` condition; without one, whether it is ready."""
    status = _condition_status(machine, c.AVAILABLE)
    if status is not None:
        return status == c.TRUE
    return machine_is_ready(machine)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _machines_ready(machines: Sequence[MachineView]) -> Condition:
    kind = c.MACHINES_READY
    if not machines:
        return Condition.true(kind, c.NO_REPLICAS_REASON)
    not_ready: list[str] = []
    unknown: list[str] = []
    for machine in sorted(machines, key=lambda m: m.name):
        if machine_is_ready(machine):
            continue
        condition = c.find_condition(machine.conditions, c.READY)
        detail = (condition or {}).get("message") or "not ready yet"
        line = f"* Machine {machine.name}: {detail}"
        if condition is not None and condition.get("status") == c.UNKNOWN:
            unknown.append(line)
        else:
            not_ready.append(line)
    if not_ready:
        return Condition.false(kind, c.NOT_READY_REASON, "\n".join(not_ready + unknown))
    if unknown:
        return Condition.unknown(kind, c.READY_UNKNOWN_REASON, "\n".join(unknown))
    return Condition.true(kind, c.READY_REASON)


def _machines_up_to_date(
    machines: Sequence[MachineView], up_to_date: Mapping[str, UpToDate]
) -> Condition:
    kind = c.MACHINES_UP_TO_DATE
    if not machines:
        return Condition.true(kind, c.NO_REPLICAS_REASON)
    outdated = [
        f"* Machine {m.name}: {', '.join(up_to_date[m.name].reasons)}"
        for m in sorted(machines, key=lambda m: m.name)
        if m.name in up_to_date and not up_to_date[m.name].up_to_date
    ]
    if outdated:
        return Condition.false(kind, c.NOT_UP_TO_DATE_REASON, "\n".join(outdated))
    return Condition.true(kind, c.UP_TO_DATE_REASON)


def _rolling_out(machines: Sequence[MachineView], up_to_date: Mapping[str, UpToDate]) -> Condition:
    kind = c.ROLLING_OUT
    outdated = [
        up_to_date[m.name]
        for m in machines
        if m.name in up_to_date and not up_to_date[m.name].up_to_date and not m.is_deleting
    ]
    if not outdated:
        return Condition.false(kind, c.NOT_ROLLING_OUT_REASON)
    reasons = sorted(
        {reason for result in outdated for reason in result.reasons},
        key=lambda r: (not r.startswith("Version"), r),
    )
    message = f"Rolling out {_plural(len(outdated), 'not up-to-date replica')}"
    if reasons:
        message += "\n" + "\n".join(f"* {r}" for r in reasons)
    return Condition.true(kind, c.ROLLING_OUT_REASON, message)


def _blocked(decision: Decision | None) -> str:
    if decision is None or decision.action != Action.WAIT or not decision.blocked:
        return ""
    return " is blocked because:\n" + "\n".join(f"* {b}" for b in decision.blocked)


def _scaling(scope: Scope, desired: int) -> tuple[Condition, Condition]:
    current = len(scope.machines)
    if current < desired:
        up = Condition.true(
            c.SCALING_UP,
            c.SCALING_UP_REASON,
            f"Scaling up from {current} to {_plural(desired, 'replica')}"
            + _blocked(scope.decision),
        )
    else:
        up = Condition.false(c.SCALING_UP, c.NOT_SCALING_UP_REASON)
    if current > desired:
        blocked = "" if scope.decision and scope.decision.rollout else _blocked(scope.decision)
        down = Condition.true(
            c.SCALING_DOWN,
            c.SCALING_DOWN_REASON,
            f"Scaling down from {current} to {_plural(desired, 'replica')}{blocked}",
        )
    else:
        down = Condition.false(c.SCALING_DOWN, c.NOT_SCALING_DOWN_REASON)
    return up, down


def _available(scope: Scope) -> Condition:
    kind = c.AVAILABLE
    if not scope.initialized:
        return Condition.false(kind, c.NOT_AVAILABLE_REASON, "Control plane not yet initialized")
    health = scope.health
    if health is None:
        message = next(
            (h.message for h in scope.health_conditions if h.message),
            "Failed to inspect the workload cluster",
        )
        return Condition.unknown(kind, c.INSPECTION_FAILED_REASON, message)
    staying = [m for m in scope.machines if not m.is_deleting]
    etcd_healthy = 0
    etcd_voting = 0
    components_healthy = 0
    for machine in staying:
        conditions = {x.type: x for x in health.machines.get(machine.name, ())}
        member = conditions.get(c.ETCD_MEMBER_HEALTHY)
        if machine.node_name is not None:
            etcd_voting += 1
            if member is not None and member.is_true:
                etcd_healthy += 1
        if all(
            conditions.get(t) is not None and conditions[t].is_true
            for t in (
                c.API_SERVER_POD_HEALTHY,
                c.CONTROLLER_MANAGER_POD_HEALTHY,
                c.SCHEDULER_POD_HEALTHY,
            )
        ):
            components_healthy += 1
    votes = health.etcd_votes
    if votes is not None:
        # What etcd lists is what its quorum counts, Machine or no Machine.
        etcd_voting, etcd_healthy = votes.voting, votes.healthy
    quorum_line = (
        f"* {etcd_healthy} of {_plural(etcd_voting, 'etcd member')} healthy, "
        f"at least {quorum(max(etcd_voting, 1))} required (etcd quorum)"
    )
    problems: list[str] = []
    if etcd_voting == 0 or etcd_healthy < quorum(etcd_voting):
        problems.append(quorum_line)
    if votes is not None and votes.unbacked:
        problems.append(
            "* The list of etcd members does not match the list of Machines: "
            f"{_plural(len(votes.unbacked), 'etcd member')} without a Machine "
            f"({', '.join(votes.unbacked)})"
        )
    if components_healthy == 0:
        problems.append(
            "* No Machine with healthy control plane components (kube-apiserver, "
            "kube-controller-manager, kube-scheduler)"
        )
    if problems:
        return Condition.false(kind, c.NOT_AVAILABLE_REASON, "\n".join(problems))
    if etcd_healthy < etcd_voting:
        # Available, but say how little failure it can take now.
        return Condition.true(kind, c.AVAILABLE_REASON, quorum_line)
    return Condition.true(kind, c.AVAILABLE_REASON)


def compute_status(scope: Scope) -> tuple[dict[str, Any], list[Condition]]:
    """The status fields kcp owns and the conditions it sets."""
    kcp = scope.view
    machines = scope.machines
    up_to_date = scope.up_to_date
    desired = 0 if kcp.is_deleting else kcp.replicas
    up_to_date_count = sum(
        1 for m in machines if m.name in up_to_date and up_to_date[m.name].up_to_date
    )
    fields: dict[str, Any] = {
        "replicas": len(machines),
        "readyReplicas": sum(1 for m in machines if machine_is_ready(m)),
        "availableReplicas": sum(1 for m in machines if machine_is_available(m)),
        "upToDateReplicas": up_to_date_count,
        "selector": labels.control_plane_selector(scope.cluster.name),
        "observedGeneration": kcp.generation,
        "initialization": {"controlPlaneInitialized": scope.initialized},
    }
    version = lowest_version(machines)
    if version is not None:
        fields["version"] = version
    remediation = last_remediation(kcp.annotations, machines)
    if remediation is not None and remediation.machine and remediation.timestamp is not None:
        # The CRD requires all three fields: an annotation someone mangled is not reported.
        fields["lastRemediation"] = remediation.to_status()
    up, down = _scaling(scope, desired)
    computed: list[Condition] = [
        _available(scope),
        Condition.true(c.INITIALIZED, c.INITIALIZED_REASON)
        if scope.initialized
        else Condition.false(c.INITIALIZED, c.NOT_INITIALIZED_REASON),
        _machines_ready(machines),
        _machines_up_to_date(machines, up_to_date),
        _rolling_out(machines, up_to_date),
        up,
        down,
        remediating_condition(machines),
        Condition.true(
            c.DELETING, scope.deleting_reason or c.DELETING_REASON, scope.deleting_message
        )
        if kcp.is_deleting
        else Condition.false(c.DELETING, c.NOT_DELETING_REASON),
        Condition.true(c.PAUSED, c.PAUSED_REASON)
        if scope.paused
        else Condition.false(c.PAUSED, c.NOT_PAUSED_REASON),
    ]
    if scope.certificates is not None:
        computed.append(scope.certificates)
    if scope.health is not None:
        computed.extend((scope.health.etcd_cluster, scope.health.components))
    else:
        computed.extend(scope.health_conditions)
    overrides = {x.type for x in scope.extra}
    result = [x for x in computed if x.type not in overrides] + list(scope.extra)
    return fields, result


def _subset_differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for key, value in wanted.items():
        if isinstance(value, Mapping):
            inner = current.get(key)
            if not isinstance(inner, Mapping) or _subset_differs(inner, value):
                return True
        elif current.get(key) != value:
            return True
    return False


def write_conditions(
    kube: Kube,
    resource: Resource,
    obj: Mapping[str, Any],
    conditions: Sequence[Condition],
    *,
    now: datetime,
    fields: Mapping[str, Any] | None = None,
    reread: Callable[[], Mapping[str, Any] | None] | None = None,
    on_written: Callable[[Mapping[str, Any]], None] | None = None,
    cached: Callable[[], Mapping[str, Any] | None] | None = None,
) -> Mapping[str, Any]:
    """Patch `fields` and `conditions` into `obj`'s status if they differ; returns the object.

    Only our fields and our condition types are touched. On a conflict the
    object is taken from `cached()` (the informer cache's copy) once it shows
    a version not tried yet, within `CACHE_CATCH_UP` seconds and once per call;
    else it is read again (`reread`, else a live GET). The merge is redone.
    `on_written` gets the object a patch returned, only when one was sent.
    """
    current: Mapping[str, Any] | None = obj
    tried: set[str] = set()
    for _attempt in range(_MAX_WRITE_ATTEMPTS):
        if current is None:
            return obj
        metadata = current.get("metadata") or {}
        tried.add(str(metadata.get("resourceVersion") or ""))
        status = current.get("status") or {}
        existing = copy.deepcopy(list(status.get("conditions") or []))
        generation = metadata.get("generation")
        changed = merge_conditions(
            existing,
            conditions,
            observed_generation=int(generation) if isinstance(generation, int) else None,
            now=now,
        )
        wanted = dict(fields or {})
        if not changed and not _subset_differs(status, wanted):
            return current
        patch_status: dict[str, Any] = dict(wanted)
        if changed:
            patch_status["conditions"] = existing
        patch = {
            "metadata": {"resourceVersion": metadata.get("resourceVersion")},
            "status": patch_status,
        }
        try:
            written = kube.merge_patch(
                resource,
                str(metadata.get("namespace") or ""),
                str(metadata.get("name") or ""),
                patch,
                subresource="status",
            )
        except ApiError as error:
            if error.not_found:
                return current
            if error.status != 409:
                raise
        else:
            if on_written is not None:
                on_written(written)
            return written
        fresher = _catch_up(cached, tried) if cached is not None else None
        cached = None
        if fresher is not None:
            current = fresher
            continue
        current = (
            reread()
            if reread is not None
            else kube.get(
                resource, str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
            )
        )
    raise ApiError(409, "Conflict", "status kept changing under us; will retry")


def _catch_up(
    cached: Callable[[], Mapping[str, Any] | None], tried: set[str]
) -> Mapping[str, Any] | None:
    """The cache's copy once its version is none of `tried` (None after `CACHE_CATCH_UP`)."""
    deadline = time.monotonic() + CACHE_CATCH_UP
    while True:
        found = cached()
        version = str(((found or {}).get("metadata") or {}).get("resourceVersion") or "")
        if found is not None and version and version not in tried:
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(_CACHE_POLL)
