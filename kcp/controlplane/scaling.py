"""What to do next with a control plane's Machines: pure decisions, one step at a time.

The rules are Cluster API's: initialize with one Machine; scale up one Machine
at a time, and only while every Machine is healthy; scale down (or roll out)
by removing outdated Machines first, from the failure domain holding the most
Machines, oldest first; never start an operation while a Machine is being
deleted; never remove an etcd member unless the members left keep quorum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from kcp.etcd import EtcdClusterStatus

__all__ = [
    "Action",
    "Decision",
    "MachineState",
    "can_remove_member",
    "decide",
    "next_failure_domain",
    "pick_for_scale_down",
    "preflight_problems",
    "quorum",
]

_EPOCH = datetime.min


def quorum(members: int) -> int:
    """Votes etcd needs to make progress with `members` voting members."""
    return members // 2 + 1


@dataclass(frozen=True)
class MachineState:
    """What a decision needs to know of one control-plane Machine."""

    name: str
    created: datetime | None = None
    failure_domain: str | None = None
    deleting: bool = False
    up_to_date: bool = True
    delete_requested: bool = False
    """The user marked it with `cluster.x-k8s.io/delete-machine`."""
    has_node: bool = True
    problems: tuple[str, ...] = ()
    """Why it is not healthy (a health condition False or Unknown); empty when healthy."""
    components_unhealthy: bool = False
    """One of its control-plane Pods is not healthy (prefer it when removing outdated ones)."""


class Action(StrEnum):
    """The kinds of step `decide` takes (the values are what logs show)."""

    INIT = "init"
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    WAIT = "wait"
    NONE = "none"

    @property
    def creates_machine(self) -> bool:
        return self in (Action.INIT, Action.SCALE_UP)


@dataclass(frozen=True)
class Decision:
    """One step towards the desired Machines, or why to wait."""

    action: Action
    reason: str = ""
    """Why (for `wait`: what blocks; for the others: what triggered the step)."""
    machine: str | None = None
    """The Machine to remove (`scale_down`)."""
    failure_domain: str | None = None
    """Where to place the new Machine (`init`, `scale_up`); None when the Cluster has none."""
    blocked: tuple[str, ...] = field(default=())
    """The preflight problems behind a `wait`."""
    rollout: bool = False
    """The step is part of a rollout (replacing outdated Machines)."""
    waits_for_deletion: bool = False
    """The `wait` is for a Machine being deleted: progress as expected, nothing to warn about."""


def _created(machine: MachineState) -> datetime:
    return machine.created or _EPOCH


def next_failure_domain(
    failure_domains: Sequence[str], machines: Sequence[MachineState]
) -> str | None:
    """The failure domain for a new Machine: fewest up-to-date Machines, then fewest in all.

    Ties go to the name that sorts first. None when the Cluster lists no
    control-plane failure domains.
    """
    if not failure_domains:
        return None
    live = [m for m in machines if not m.deleting]

    def weight(domain: str) -> tuple[int, int, str]:
        up_to_date = sum(1 for m in live if m.failure_domain == domain and m.up_to_date)
        total = sum(1 for m in live if m.failure_domain == domain)
        return (up_to_date, total, domain)

    return min(failure_domains, key=weight)


def _in_fullest_domain(
    eligible: Sequence[MachineState], machines: Sequence[MachineState]
) -> MachineState:
    """Of `eligible`, the oldest in the failure domain where most of `machines` are."""
    counts: dict[str | None, int] = {}
    for machine in machines:
        counts[machine.failure_domain] = counts.get(machine.failure_domain, 0) + 1
    domains = {m.failure_domain for m in eligible}
    fullest = max(domains, key=lambda d: (counts.get(d, 0), d or ""))
    candidates = [m for m in eligible if m.failure_domain == fullest]
    return min(candidates, key=lambda m: (_created(m), m.name))


def pick_for_scale_down(
    machines: Sequence[MachineState], *, outdated_only: bool = False
) -> MachineState | None:
    """The Machine to remove, by Cluster API's priorities.

    Outdated Machines the user marked for deletion, then any marked Machine,
    then outdated Machines whose control-plane Pods are unhealthy, then any
    outdated Machine, then (unless `outdated_only`) any Machine; within the
    chosen set, the oldest in the failure domain holding the most Machines.
    """
    live = [m for m in machines if not m.deleting]
    outdated = [m for m in live if not m.up_to_date]
    tiers: list[list[MachineState]] = [
        [m for m in outdated if m.delete_requested],
        [m for m in live if m.delete_requested],
        [m for m in outdated if m.components_unhealthy],
        outdated,
    ]
    if not outdated_only:
        tiers.append(live)
    for tier in tiers:
        if tier:
            return _in_fullest_domain(tier, live)
    return None


def preflight_problems(
    machines: Sequence[MachineState], *, excluding: str | None = None
) -> tuple[str, ...]:
    """Why the control plane is not stable enough for the next step (empty: go ahead).

    A Machine being deleted blocks everything; otherwise every Machine but
    `excluding` (the one about to be removed) must have a Node and be healthy.
    """
    deleting = sorted(m.name for m in machines if m.deleting)
    if deleting:
        return (f"Machine {', '.join(deleting)} is being deleted",)
    problems: list[str] = []
    for machine in sorted(machines, key=lambda m: m.name):
        if machine.name == excluding:
            continue
        if not machine.has_node:
            problems.append(
                f"Machine {machine.name} does not have a corresponding Node yet "
                "(status.nodeRef not set)"
            )
        problems.extend(machine.problems)
    return tuple(problems)


def decide(
    *,
    desired: int,
    max_surge: int,
    machines: Sequence[MachineState],
    failure_domains: Sequence[str] = (),
    certificates_available: bool = True,
    replacement_preflight: Sequence[str] | None = None,
) -> Decision:
    """The next step towards `desired` up-to-date Machines, or why to wait.

    A rollout surges to `desired + max_surge` Machines before removing an
    outdated one (with `max_surge` 0 it removes first and then replaces).
    While a remediated Machine waits for its replacement,
    `replacement_preflight` holds the less demanding checks a scale up must
    pass instead of requiring every Machine healthy (None: no remediation).
    """
    total = len(machines)
    outdated = [m for m in machines if not m.up_to_date and not m.deleting]
    if total == 0:
        if desired <= 0:
            return Decision(Action.NONE)
        if not certificates_available:
            return Decision(
                Action.WAIT,
                "cluster certificates are not available",
                blocked=("cluster certificates are not available",),
            )
        return Decision(
            Action.INIT,
            "initializing the control plane",
            failure_domain=next_failure_domain(failure_domains, machines),
        )
    if outdated and total >= desired + max_surge:
        return _scale_down(machines, "rolling out outdated Machines", outdated_only=True)
    if total < desired or (outdated and total < desired + max_surge):
        rollout = bool(outdated)
        blocked = preflight_problems(machines)
        if blocked and replacement_preflight is not None and not _deleting(machines):
            blocked = tuple(replacement_preflight)
        if not certificates_available:
            blocked = ("cluster certificates are not available", *blocked)
        why = (
            "rolling out outdated Machines" if rollout else f"scaling up from {total} to {desired}"
        )
        if blocked:
            return _wait(machines, why, blocked, rollout=rollout)
        return Decision(
            Action.SCALE_UP,
            why,
            failure_domain=next_failure_domain(failure_domains, machines),
            rollout=rollout,
        )
    if total > desired:
        return _scale_down(machines, f"scaling down from {total} to {desired}", outdated_only=False)
    return Decision(Action.NONE)


def _deleting(machines: Sequence[MachineState]) -> bool:
    return any(m.deleting for m in machines)


def _wait(
    machines: Sequence[MachineState],
    why: str,
    blocked: tuple[str, ...],
    *,
    rollout: bool,
    machine: str | None = None,
) -> Decision:
    return Decision(
        Action.WAIT,
        why,
        machine=machine,
        blocked=blocked,
        rollout=rollout,
        waits_for_deletion=_deleting(machines),
    )


def _scale_down(machines: Sequence[MachineState], why: str, *, outdated_only: bool) -> Decision:
    victim = pick_for_scale_down(machines, outdated_only=outdated_only)
    rollout = outdated_only
    if victim is None:
        deleting = preflight_problems(machines)
        return _wait(machines, why, deleting or ("no Machine to remove",), rollout=rollout)
    blocked = preflight_problems(machines, excluding=victim.name)
    if blocked:
        return _wait(machines, why, blocked, rollout=rollout, machine=victim.name)
    return Decision(Action.SCALE_DOWN, why, machine=victim.name, rollout=rollout)


def can_remove_member(
    etcd: EtcdClusterStatus, member_name: str, *, member_id: int | None = None
) -> tuple[bool, str]:
    """Whether the members left after removing one keep a healthy quorum, and why not.

    The member is found by `member_id` when given, else by name. As in Cluster
    API, every voting member that stays counts, whether a Machine backs it or
    not (one no endpoint could check counts as unhealthy), and a learner or a
    member added but never started blocks any removal until it votes. A member
    that is not in the list can always "be removed" (there is nothing to do).
    """
    target = next(
        (
            m
            for m in etcd.members
            if (m.id == member_id if member_id is not None else m.name == member_name)
        ),
        None,
    )
    if target is None:
        return True, f"etcd member {member_name} is not in the member list"
    remaining = [m for m in etcd.members if m.id != target.id]
    joining = sorted(m.name or f"{m.id:x}" for m in remaining if m.is_learner or not m.started)
    if joining:
        return False, (
            f"etcd member {', '.join(joining)} is still joining (a learner or not started); "
            f"removing etcd member {member_name} waits until it votes"
        )
    healthy = _healthy_ids(etcd, (m.id for m in remaining))
    needed = quorum(len(remaining)) if remaining else 0
    if len(healthy) < needed:
        sick = sorted(m.name for m in remaining if m.id not in healthy)
        return False, (
            f"removing etcd member {member_name} would leave {len(healthy)} healthy of "
            f"{len(remaining)} members, fewer than the quorum of {needed} "
            f"(not healthy: {', '.join(sick)})"
        )
    return True, ""


def _healthy_ids(etcd: EtcdClusterStatus, ids: Iterable[int]) -> set[int]:
    by_id: Mapping[int, bool] = {
        h.member_id: h.healthy for h in etcd.health if h.member_id is not None
    }
    return {i for i in ids if by_id.get(i, False)}
