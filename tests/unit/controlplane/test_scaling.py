"""Scaling decisions: init, one-at-a-time scale up, scale-down choice, quorum, failure domains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kcp.controlplane.scaling import (
    Action,
    MachineState,
    can_remove_member,
    decide,
    next_failure_domain,
    pick_for_scale_down,
    preflight_problems,
    quorum,
)
from kcp.etcd import EtcdClusterStatus, Member, MemberHealth

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def m(name: str, minutes: int = 0, **kw: object) -> MachineState:
    return MachineState(name=name, created=T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("members", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_quorum(members: int, needed: int) -> None:
    assert quorum(members) == needed


def test_empty_control_plane_is_initialized_with_one_machine() -> None:
    decision = decide(desired=3, max_surge=1, machines=[], failure_domains=["fd2", "fd1"])
    assert decision.action == "init"
    assert decision.failure_domain == "fd1"


def test_init_waits_for_certificates() -> None:
    decision = decide(desired=1, max_surge=1, machines=[], certificates_available=False)
    assert decision.action == "wait"
    assert "certificates" in decision.blocked[0]


def test_scale_up_one_at_a_time_only_while_healthy() -> None:
    healthy = decide(desired=3, max_surge=1, machines=[m("a")])
    assert healthy.action == "scale_up"
    provisioning = decide(desired=3, max_surge=1, machines=[m("a"), m("b", 1, has_node=False)])
    assert provisioning.action == "wait"
    assert "b does not have a corresponding Node" in provisioning.blocked[0]
    sick = decide(desired=3, max_surge=1, machines=[m("a", problems=("etcd sick",))])
    assert sick.action == "wait"
    assert sick.blocked == ("etcd sick",)


def test_nothing_happens_while_a_machine_is_deleting() -> None:
    decision = decide(desired=1, max_surge=1, machines=[m("a"), m("b", 1, deleting=True)])
    assert decision.action == "wait"
    assert "b is being deleted" in decision.blocked[0]
    assert decision.waits_for_deletion


def test_a_message_about_a_deletion_is_not_a_machine_being_deleted() -> None:
    problem = "Machine a reports EtcdPodHealthy condition is false (Pod is being deleted)"
    decision = decide(desired=3, max_surge=1, machines=[m("a", problems=(problem,))])
    assert decision.action == Action.WAIT
    assert not decision.waits_for_deletion


def test_scale_up_blocked_without_certificates() -> None:
    decision = decide(desired=3, max_surge=1, machines=[m("a")], certificates_available=False)
    assert decision.action == "wait"


def test_scale_down_removes_oldest_and_ignores_its_own_health() -> None:
    machines = [m("a", 0, problems=("a sick",)), m("b", 1), m("c", 2)]
    decision = decide(desired=1, max_surge=1, machines=machines)
    assert decision.action == "scale_down"
    assert decision.machine == "a"


def test_scale_down_waits_when_another_machine_is_unhealthy() -> None:
    machines = [m("a", 0), m("b", 1, problems=("b sick",)), m("c", 2)]
    decision = decide(desired=1, max_surge=1, machines=machines)
    assert decision.action == "wait"
    assert decision.machine == "a"


def test_scale_down_prefers_outdated_then_fullest_failure_domain() -> None:
    machines = [
        m("a", 0, failure_domain="fd1"),
        m("b", 1, failure_domain="fd2"),
        m("c", 2, failure_domain="fd2"),
        m("d", 3, failure_domain="fd1", up_to_date=False),
    ]
    assert pick_for_scale_down(machines).name == "d"  # type: ignore[union-attr]
    up_to_date = [x for x in machines if x.name != "d"]
    # fd2 holds two Machines: its oldest goes.
    assert pick_for_scale_down(up_to_date).name == "b"  # type: ignore[union-attr]


def test_delete_annotation_wins() -> None:
    machines = [m("a", 0, up_to_date=False), m("b", 1, delete_requested=True)]
    assert pick_for_scale_down(machines).name == "b"  # type: ignore[union-attr]
    both = [m("a", 0, up_to_date=False, delete_requested=True), m("b", 1, delete_requested=True)]
    assert pick_for_scale_down(both).name == "a"  # type: ignore[union-attr]


def test_outdated_with_unhealthy_components_go_first() -> None:
    machines = [m("a", 0, up_to_date=False), m("b", 1, up_to_date=False, components_unhealthy=True)]
    assert pick_for_scale_down(machines).name == "b"  # type: ignore[union-attr]


def test_rollout_with_surge_one_adds_before_removing() -> None:
    machines = [
        m("a", 0, up_to_date=False),
        m("b", 1, up_to_date=False),
        m("c", 2, up_to_date=False),
    ]
    first = decide(desired=3, max_surge=1, machines=machines)
    assert first.action == "scale_up"
    assert first.rollout
    machines.append(m("d", 3))
    second = decide(desired=3, max_surge=1, machines=machines)
    assert second.action == "scale_down"
    assert second.machine == "a"
    assert second.rollout


def test_rollout_with_surge_zero_removes_first() -> None:
    machines = [
        m("a", 0, up_to_date=False),
        m("b", 1, up_to_date=False),
        m("c", 2, up_to_date=False),
    ]
    first = decide(desired=3, max_surge=0, machines=machines)
    assert first.action == "scale_down"
    assert first.machine == "a"
    second = decide(desired=3, max_surge=0, machines=machines[1:])
    assert second.action == "scale_up"
    assert second.rollout


def test_scale_down_during_rollout_removes_outdated_first() -> None:
    machines = [m("a", 0), m("b", 1, up_to_date=False), m("c", 2)]
    decision = decide(desired=1, max_surge=1, machines=machines)
    assert decision.action == "scale_down"
    assert decision.machine == "b"


def test_steady_state_does_nothing() -> None:
    assert decide(desired=3, max_surge=1, machines=[m("a"), m("b"), m("c")]).action == "none"


def test_failure_domains_spread_new_machines() -> None:
    machines = [m("a", failure_domain="fd1"), m("b", failure_domain="fd2")]
    assert next_failure_domain(["fd1", "fd2", "fd3"], machines) == "fd3"
    machines.append(m("c", failure_domain="fd3"))
    assert next_failure_domain(["fd1", "fd2", "fd3"], machines) == "fd1"
    assert next_failure_domain([], machines) is None


def test_failure_domain_counts_up_to_date_machines_first() -> None:
    machines = [m("a", failure_domain="fd1", up_to_date=False), m("b", failure_domain="fd2")]
    assert next_failure_domain(["fd1", "fd2"], machines) == "fd1"


def test_preflight_excludes_the_machine_being_removed() -> None:
    machines = [m("a", problems=("a sick",)), m("b")]
    assert preflight_problems(machines, excluding="a") == ()
    assert preflight_problems(machines) == ("a sick",)


def _etcd(healthy: dict[str, bool]) -> EtcdClusterStatus:
    members = tuple(
        Member(id=i + 1, name=name, peer_urls=(), client_urls=()) for i, name in enumerate(healthy)
    )
    health = tuple(
        MemberHealth(
            member_id=i + 1,
            name=name,
            endpoint=f"{name}:2379",
            reachable=ok,
            status=None,
            alarms=(),
            errors=() if ok else ("unreachable",),
        )
        for i, (name, ok) in enumerate(healthy.items())
    )
    return EtcdClusterStatus(leader_id=1, members=members, health=health, alarms=(), errors=())


def test_member_removal_keeps_quorum() -> None:
    assert can_remove_member(_etcd({"a": True, "b": True, "c": True}), "a")[0]
    # 3 -> 2 with one of the two left down: 1 healthy of 2 is no quorum.
    ok, why = can_remove_member(_etcd({"a": True, "b": True, "c": False}), "a")
    assert not ok
    assert "quorum of 2" in why
    # Removing the broken member itself is fine.
    assert can_remove_member(_etcd({"a": True, "b": True, "c": False}), "c")[0]
    # 2 -> 1.
    assert can_remove_member(_etcd({"a": True, "b": True}), "b")[0]
    # Absent member: nothing to do.
    assert can_remove_member(_etcd({"a": True}), "zzz")[0]
