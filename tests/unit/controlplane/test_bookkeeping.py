"""Member bookkeeping decisions: the pre-terminate hook's steps and members without Machines."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import MachineView
from kcp.controlplane.bookkeeping import (
    pre_terminate_step,
    unbacked_member_step,
    waiting_for_pre_terminate_hook,
)
from kcp.controlplane.condition import Condition
from kcp.controlplane.scaling import can_remove_member
from kcp.etcd import EtcdClusterStatus, Member
from tests.unit.controlplane.builders import NOW, condition, machine, ts
from tests.unit.controlplane.fakes import etcd_status

HOOK = labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION
HEALTH_TYPES = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
    c.ETCD_MEMBER_HEALTHY,
)


def _live(name: str, **kw: Any) -> MachineView:
    return MachineView(machine(name, annotations={HOOK: ""}, **kw))


def _deleting(
    name: str,
    *,
    drained: bool = True,
    hooks: dict[str, str] | None = None,
    since: timedelta = timedelta(0),
    **kw: Any,
) -> MachineView:
    reason = "WaitingForPreTerminateHook" if drained else "DrainingNode"
    obj = machine(
        name,
        deleting=True,
        annotations={HOOK: ""} if hooks is None else hooks,
        conditions=[condition(c.DELETING, c.TRUE, reason=reason)],
        **kw,
    )
    obj["metadata"]["deletionTimestamp"] = ts(NOW - since)
    return MachineView(obj)


def _healthy(*names: str) -> dict[str, tuple[Condition, ...]]:
    return {n: tuple(Condition.true(t, "Ok") for t in HEALTH_TYPES) for n in names}


def test_core_waits_on_the_hook_only_once_drained() -> None:
    assert waiting_for_pre_terminate_hook(_deleting("a"))
    assert not waiting_for_pre_terminate_hook(_deleting("a", drained=False))
    assert not waiting_for_pre_terminate_hook(_live("a"))


def test_nothing_to_do_without_a_deleting_machine() -> None:
    machines = [_live("a"), _live("b")]
    assert pre_terminate_step(machines, etcd_status(["a", "b"]), _healthy("a", "b")).action == (
        "none"
    )


def test_the_member_goes_once_the_machine_is_drained() -> None:
    machines = [_deleting("a"), _live("b"), _live("c")]
    step = pre_terminate_step(machines, etcd_status(["a", "b", "c"]), _healthy("b", "c"))
    assert step.action == "remove" and step.machine == "a"
    assert step.member is not None and (step.member.name, step.member.id) == ("a", 1)


def test_a_draining_machine_keeps_its_member() -> None:
    machines = [_deleting("a", drained=False), _live("b"), _live("c")]
    step = pre_terminate_step(machines, etcd_status(["a", "b", "c"]), _healthy("b", "c"))
    assert step.action == "wait" and not step.held_by
    assert "being drained" in step.reason


def test_other_pre_terminate_hooks_go_first() -> None:
    other = f"{labels.PRE_TERMINATE_DELETE_HOOK_ANNOTATION_PREFIX}/backup"
    machines = [_deleting("a", hooks={HOOK: "", other: ""}), _live("b"), _live("c")]
    step = pre_terminate_step(machines, etcd_status(["a", "b", "c"]), _healthy("b", "c"))
    assert step.action == "wait"
    assert other in step.reason


def test_a_deleting_machine_without_the_hook_is_waited_for_first() -> None:
    machines = [_deleting("a", hooks={}), _deleting("b"), _live("c")]
    step = pre_terminate_step(machines, etcd_status(["a", "b", "c"]), _healthy("c"))
    assert (step.action, step.machine) == ("wait", "a")


def test_one_machine_at_a_time_oldest_deletion_first() -> None:
    machines = [_deleting("a"), _deleting("b", since=timedelta(minutes=1)), _live("c")]
    health = _healthy("c")
    step = pre_terminate_step(machines, etcd_status(["a", "b", "c"]), health)
    assert step.machine == "b"


def test_quorum_holds_the_member_and_says_why() -> None:
    machines = [_deleting("a"), _live("b"), _live("c")]
    step = pre_terminate_step(
        machines, etcd_status(["a", "b", "c"], unhealthy=["c"]), _healthy("b", "c")
    )
    assert (step.action, step.held_by) == ("wait", "etcd")
    assert step.reason == (
        "Machine a is being deleted but keeps its etcd member: removing etcd member a would "
        "leave 1 healthy of 2 members, fewer than the quorum of 2 (not healthy: c)"
    )


def test_a_member_without_a_machine_counts_against_quorum() -> None:
    """3 Machines, 4 members: removing a's leaves b, c and a dead stranger (2 of 3: fine);
    with c down as well it would leave 1 of 3."""
    machines = [_deleting("a"), _live("b"), _live("c")]
    stale = etcd_status(["a", "b", "c", "zombie"], unhealthy=["zombie"])
    assert pre_terminate_step(machines, stale, _healthy("b", "c")).action == "remove"
    worse = etcd_status(["a", "b", "c", "zombie"], unhealthy=["zombie", "c"])
    step = pre_terminate_step(machines, worse, _healthy("b", "c"))
    assert step.held_by == "etcd"
    assert "1 healthy of 3 members" in step.reason


def test_no_other_healthy_control_plane_holds_the_deletion() -> None:
    machines = [_deleting("a"), _live("b")]
    sick = {"b": (Condition.false(c.API_SERVER_POD_HEALTHY, "Failed", "CrashLoopBackOff"),)}
    step = pre_terminate_step(machines, etcd_status(["a", "b"]), sick)
    assert (step.action, step.held_by) == ("wait", "components")
    assert "no Machine with healthy control plane components" in step.reason


def test_the_hook_goes_without_etcd_work_when_there_is_nothing_to_remove() -> None:
    # The last Machine: the cluster goes with it.
    assert pre_terminate_step([_deleting("a")], etcd_status(["a"]), {}).action == "release"
    # A Machine that never had a Node, and one whose member is gone already.
    never = [_deleting("a", node=None), _live("b")]
    assert pre_terminate_step(never, etcd_status(["b"]), _healthy("b")).action == "release"
    gone = [_deleting("a"), _live("b"), _live("c")]
    assert pre_terminate_step(gone, etcd_status(["b", "c"]), _healthy("b", "c")).action == (
        "release"
    )


def test_unknown_members_keep_the_hook() -> None:
    machines = [_deleting("a"), _live("b")]
    step = pre_terminate_step(machines, None, _healthy("b"))
    assert step.action == "wait"
    assert "etcd member list is not known" in step.reason


# -- members without Machines -------------------------------------------------------------


def test_an_unbacked_member_is_removed_when_safe() -> None:
    machines = [_live("a"), _live("b"), _live("c")]
    status = etcd_status(["a", "b", "c", "zombie"], unhealthy=["zombie"])
    step = unbacked_member_step(machines, status, etcd_cluster_healthy=False)
    assert step.action == "remove"
    assert step.member is not None and step.member.name == "zombie"


def test_nothing_is_removed_while_etcd_is_healthy_or_unknown() -> None:
    machines = [_live("a")]
    assert (
        unbacked_member_step(machines, etcd_status(["a"]), etcd_cluster_healthy=True).action
        == "none"
    )
    assert unbacked_member_step(machines, None, etcd_cluster_healthy=False).action == "none"


def test_a_provisioning_machine_may_own_the_member() -> None:
    machines = [_live("a"), _live("b"), _live("new", node=None)]
    status = etcd_status(["a", "b", "new-node"])
    step = unbacked_member_step(machines, status, etcd_cluster_healthy=False)
    assert step.action == "wait"
    assert "provisioning Machine new" in step.reason


def test_an_unbacked_member_quorum_needs_is_held() -> None:
    machines = [_live("a"), _live("b")]
    status = etcd_status(["a", "b", "zombie"], unhealthy=["b", "zombie"])
    step = unbacked_member_step(machines, status, etcd_cluster_healthy=False)
    assert step.action == "hold"
    assert "quorum of 2" in step.reason


def test_a_member_never_started_goes_without_a_quorum_check() -> None:
    machines = [_live("a")]
    base = etcd_status(["a"])
    unstarted = Member(id=9, name="", peer_urls=("https://127.0.9.9:2380",), client_urls=())
    status = EtcdClusterStatus(
        leader_id=1,
        members=(*base.members, unstarted),
        health=base.health,
        alarms=(),
        errors=(),
    )
    step = unbacked_member_step(machines, status, etcd_cluster_healthy=False)
    assert step.action == "remove" and step.member == unstarted


def test_a_joining_member_blocks_removals() -> None:
    base = etcd_status(["a", "b", "c"])
    joining = Member(id=9, name="", peer_urls=(), client_urls=())
    status = EtcdClusterStatus(
        leader_id=1, members=(*base.members, joining), health=base.health, alarms=(), errors=()
    )
    ok, why = can_remove_member(status, "a")
    assert not ok
    assert "still joining" in why
