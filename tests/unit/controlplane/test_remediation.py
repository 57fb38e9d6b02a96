"""Remediation decisions: which unhealthy Machine goes, when, and why not."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.objects import MachineView
from kcp.controlplane.condition import Condition
from kcp.controlplane.remediation import (
    pick_machine_to_remediate,
    plan_remediation,
    remediating_condition,
    replacement_problems,
)
from kcp.controlplane.remediation_retries import (
    RemediationData,
    RemediationSettings,
    check_retry_limits,
    last_remediation,
    stale_in_progress,
)
from kcp.controlplane.scaling import MachineState, decide
from kcp.etcd import EtcdClusterStatus
from tests.unit.controlplane.builders import NOW, condition, machine
from tests.unit.controlplane.fakes import etcd_status

HEALTH_TYPES = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
    c.ETCD_MEMBER_HEALTHY,
)
FOR = labels.REMEDIATION_FOR_ANNOTATION
IN_PROGRESS = labels.REMEDIATION_IN_PROGRESS_ANNOTATION


def _marked() -> list[dict[str, Any]]:
    """What the MachineHealthCheck writes on a Machine it leaves to its owner to remediate."""
    return [
        condition(c.HEALTH_CHECK_SUCCEEDED, c.FALSE, "UnhealthyNode"),
        condition(c.OWNER_REMEDIATED, c.FALSE, "WaitingForRemediation"),
    ]


def _m(
    name: str,
    *,
    marked: bool = False,
    healthy: bool = True,
    extra: Sequence[dict[str, Any]] = (),
    **kw: Any,
) -> MachineView:
    conditions = [condition(t, c.TRUE if healthy else c.FALSE) for t in HEALTH_TYPES]
    if marked:
        conditions += _marked()
    return MachineView(machine(name, conditions=[*conditions, *extra], **kw))


def _health(machines: Sequence[MachineView]) -> dict[str, tuple[Condition, ...]]:
    return {
        m.name: tuple(
            Condition(str(x["type"]), str(x["status"]), "Ok")
            for x in m.conditions
            if x["type"] in HEALTH_TYPES
        )
        for m in machines
    }


def _plan(
    machines: Sequence[MachineView],
    etcd: EtcdClusterStatus | None,
    *,
    initialized: bool = True,
    annotations: dict[str, str] | None = None,
    settings: RemediationSettings | None = None,
) -> Any:
    return plan_remediation(
        machines=machines,
        kcp_annotations=annotations or {},
        initialized=initialized,
        settings=settings or RemediationSettings(),
        now=NOW,
        etcd=etcd,
        health=_health(machines),
    )


def _replacement(failed: str, *, ago: timedelta, retries: int) -> dict[str, str]:
    return {FOR: RemediationData(failed, NOW - ago, retries).to_annotation()}


def test_a_dead_machine_of_three_is_remediated() -> None:
    machines = [_m("a", marked=True, healthy=False), _m("b"), _m("c")]
    step = _plan(machines, etcd_status(["a", "b", "c"], unhealthy=["a"]))
    assert step.action == "remediate" and step.machine.name == "a"
    assert step.data == RemediationData("a", NOW, 0)


def test_removing_a_member_that_would_cost_quorum_is_refused_and_says_so() -> None:
    machines = [_m("a", marked=True, healthy=False), _m("b", healthy=False), _m("c")]
    step = _plan(machines, etcd_status(["a", "b", "c"], unhealthy=["a", "b"]))
    assert step.action == "wait" and step.machine.name == "a"
    assert step.reason == c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON and step.blocked_by_safety
    assert "etcd quorum" in step.message
    assert "1 healthy of 2 members, fewer than the quorum of 2 (not healthy: b)" in step.message


def test_two_machines_marked_with_an_unreachable_member_each_are_both_refused() -> None:
    machines = [
        _m("a", marked=True, healthy=False, age=timedelta(hours=2)),
        _m("b", marked=True, healthy=False),
        _m("c"),
    ]
    step = _plan(machines, etcd_status(["a", "b", "c"], unhealthy=["a", "b"]))
    assert step.action == "wait" and step.machine.name == "a"  # the oldest of two as broken
    assert step.blocked_by_safety


def test_no_other_machine_with_healthy_components_is_refused() -> None:
    machines = [_m("a", marked=True, healthy=False), _m("b", healthy=False), _m("c")]
    health = _health(machines)
    health["c"] = tuple(Condition.false(t, "NotHealthy") for t in HEALTH_TYPES)
    step = plan_remediation(
        machines=machines,
        kcp_annotations={},
        initialized=True,
        settings=RemediationSettings(),
        now=NOW,
        etcd=etcd_status(["a", "b", "c"]),
        health=health,
    )
    assert step.action == "wait" and "healthy control plane components" in step.message


def test_one_at_a_time_while_a_replacement_is_awaited() -> None:
    machines = [_m("b", marked=True, healthy=False), _m("c")]
    in_progress = {IN_PROGRESS: RemediationData("a", NOW, 0).to_annotation()}
    step = _plan(machines, etcd_status(["b", "c"]), annotations=in_progress)
    assert step.action == "wait" and step.reason == ""  # nothing said on b yet


def test_nothing_while_another_machine_is_deleting_or_provisioning() -> None:
    etcd = etcd_status(["a", "b", "c"], unhealthy=["a"])
    deleting = [_m("a", marked=True, healthy=False), _m("b"), _m("c"), _m("d", deleting=True)]
    step = _plan(deleting, etcd)
    assert step.action == "wait" and step.reason == c.OWNER_REMEDIATED_DEFERRED_REASON
    assert "deletion" in step.message and "d" in step.message
    provisioning = [_m("a", marked=True, healthy=False), _m("b"), _m("c"), _m("d", node=None)]
    step = _plan(provisioning, etcd)
    assert step.action == "wait" and "provisioning" in step.message


def test_a_machine_being_deleted_already_is_left_alone() -> None:
    machines = [_m("a", marked=True, healthy=False, deleting=True), _m("b"), _m("c")]
    assert _plan(machines, etcd_status(["a", "b", "c"])).action == "none"


def test_a_single_initialized_machine_is_not_remediated() -> None:
    step = _plan([_m("a", marked=True, healthy=False)], etcd_status(["a"], unhealthy=["a"]))
    assert step.action == "wait" and "less or equal to 1" in step.message


def test_the_first_machine_that_never_initialized_the_cluster_is_remediated() -> None:
    failing = _m("a", marked=True, healthy=False, node=None)
    step = _plan([failing], None, initialized=False)
    assert step.action == "remediate" and step.machine.name == "a"


def test_unknown_etcd_defers() -> None:
    machines = [_m("a", marked=True, healthy=False), _m("b"), _m("c")]
    step = _plan(machines, None)
    assert step.action == "wait" and step.reason == c.OWNER_REMEDIATED_DEFERRED_REASON


def test_a_replacement_failing_soon_is_a_retry_and_counts() -> None:
    settings = RemediationSettings(max_retry=3, min_healthy_period=timedelta(hours=1))
    retried = _m("a2", annotations=_replacement("a1", ago=timedelta(minutes=5), retries=1))
    check = check_retry_limits(retried, settings, NOW)
    assert check.allowed and check.data == RemediationData("a2", NOW, 2)


def test_max_retry_stops_the_retries() -> None:
    settings = RemediationSettings(max_retry=1)
    retried = _m("a2", annotations=_replacement("a1", ago=timedelta(minutes=5), retries=1))
    check = check_retry_limits(retried, settings, NOW)
    assert not check.allowed and check.reason == c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON
    assert "already failed 1 times (MaxRetry 1)" in check.message
    machines = [
        _m(
            "a2",
            marked=True,
            healthy=False,
            annotations=_replacement("a1", ago=timedelta(minutes=5), retries=1),
        ),
        _m("b"),
        _m("c"),
    ]
    step = _plan(machines, etcd_status(["a2", "b", "c"], unhealthy=["a2"]), settings=settings)
    assert step.action == "wait" and "MaxRetry" in step.message


def test_max_retry_zero_allows_the_first_remediation_only() -> None:
    settings = RemediationSettings(max_retry=0)
    assert check_retry_limits(_m("a"), settings, NOW).allowed
    replacement = _m("a2", annotations=_replacement("a", ago=timedelta(minutes=1), retries=0))
    assert not check_retry_limits(replacement, settings, NOW).allowed


def test_retry_period_defers_a_retry() -> None:
    settings = RemediationSettings(retry_period=timedelta(minutes=10))
    soon = _m("a2", annotations=_replacement("a1", ago=timedelta(minutes=5), retries=0))
    check = check_retry_limits(soon, settings, NOW)
    assert not check.allowed and check.reason == c.OWNER_REMEDIATED_DEFERRED_REASON
    assert "10m0s (RetryPeriodSeconds)" in check.message
    later = _m("a2", annotations=_replacement("a1", ago=timedelta(minutes=11), retries=0))
    assert check_retry_limits(later, settings, NOW).data.retry_count == 1


def test_after_the_min_healthy_period_a_failure_is_a_new_one() -> None:
    settings = RemediationSettings(max_retry=1, min_healthy_period=timedelta(minutes=30))
    old = _m("a2", annotations=_replacement("a1", ago=timedelta(minutes=31), retries=1))
    check = check_retry_limits(old, settings, NOW)
    assert check.allowed and check.data == RemediationData("a2", NOW, 0)


def test_settings_come_from_the_spec_with_cluster_apis_defaults() -> None:
    assert RemediationSettings.from_spec({"spec": {}}) == RemediationSettings(
        None, timedelta(0), timedelta(hours=1)
    )
    spec = {"maxRetry": 2, "retryPeriodSeconds": 30, "minHealthyPeriodSeconds": 600}
    assert RemediationSettings.from_spec({"spec": {"remediation": spec}}) == RemediationSettings(
        2, timedelta(seconds=30), timedelta(minutes=10)
    )


def test_the_most_broken_machine_goes_first() -> None:
    no_node = _m("z", marked=True, node=None)
    bad_etcd = _m("y", marked=True, healthy=False, age=timedelta(minutes=1))
    old = _m("x", marked=True, age=timedelta(hours=5))
    assert pick_machine_to_remediate([old, bad_etcd, no_node]).name == "z"
    assert pick_machine_to_remediate([old, bad_etcd]).name == "y"
    assert pick_machine_to_remediate([old, _m("w", marked=True)]).name == "x"
    assert pick_machine_to_remediate([_m("v")]) is None


def test_data_round_trips_through_cluster_apis_json() -> None:
    data = RemediationData("m1", NOW, 2)
    assert RemediationData.from_annotation(data.to_annotation()) == data
    go = '{"machine":"m1","timestamp":"2026-12-07T01:02:03Z","retryCount":1}'
    parsed = RemediationData.from_annotation(go)
    assert (parsed.machine, parsed.retry_count) == ("m1", 1)
    assert parsed.to_status() == {"machine": "m1", "time": "2026-12-07T01:02:03Z", "retryCount": 1}


def test_remediating_condition_aggregates_owner_remediated() -> None:
    refused = _m(
        "a",
        extra=[
            condition(c.HEALTH_CHECK_SUCCEEDED, c.FALSE),
            condition(
                c.OWNER_REMEDIATED,
                c.FALSE,
                c.OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON,
                "quorum!",
            ),
        ],
    )
    found = remediating_condition([refused, _m("b")])
    assert (found.status, found.reason, found.message) == (
        c.TRUE,
        "Remediating",
        "* Machine a: quorum!",
    )
    other = _m("b", extra=[condition(c.HEALTH_CHECK_SUCCEEDED, c.FALSE)])
    found = remediating_condition([other])
    assert found.status == c.FALSE
    assert found.message == "Machine b is not healthy (not to be remediated by KubeadmControlPlane)"
    assert remediating_condition([_m("c")]) == Condition.false(c.REMEDIATING, "NotRemediating")


def test_last_remediation_is_the_one_in_progress_else_the_newest_replacement() -> None:
    older = _m("a2", annotations=_replacement("a1", ago=timedelta(hours=2), retries=0))
    newer = _m("b2", annotations=_replacement("b1", ago=timedelta(minutes=2), retries=1))
    found = last_remediation({}, [older, newer])
    assert found is not None and (found.machine, found.retry_count) == ("b1", 1)
    current = RemediationData("c1", NOW, 0)
    assert last_remediation({IN_PROGRESS: current.to_annotation()}, [older]) == current
    assert last_remediation({}, [_m("x")]) is None


def test_a_stale_in_progress_annotation_is_recognised() -> None:
    annotations = {
        IN_PROGRESS: RemediationData("a", NOW - timedelta(minutes=10), 0).to_annotation()
    }
    assert stale_in_progress(annotations, [_m("b", age=timedelta(minutes=1))])
    assert not stale_in_progress(annotations, [_m("b", age=timedelta(minutes=30))])
    assert stale_in_progress({IN_PROGRESS: "not json"}, [_m("b")])
    assert not stale_in_progress({}, [_m("b")])


def test_the_replacement_passes_relaxed_checks_with_one_more_failure() -> None:
    # Five members, two dead and one of them remediated: four left, one of them dead.
    machines = [_m("b", healthy=False), _m("c"), _m("d"), _m("e")]
    assert (
        replacement_problems(
            machines, etcd_status(["b", "c", "d", "e"], unhealthy=["b"]), _health(machines)
        )
        == ()
    )
    # Three members, one dead, one remediated: adding a member could cost quorum.
    two = [_m("b", healthy=False), _m("c")]
    problems = replacement_problems(two, etcd_status(["b", "c"], unhealthy=["b"]), _health(two))
    assert problems and "quorum" in problems[0]
    # decide() uses them instead of requiring every Machine healthy.
    states = [
        MachineState("b", problems=("Machine b reports EtcdMemberHealthy condition is false",)),
        MachineState("c"),
        MachineState("d"),
        MachineState("e"),
    ]
    assert decide(desired=5, max_surge=1, machines=states).action == "wait"
    assert decide(desired=5, max_surge=1, machines=states, replacement_preflight=()).action == (
        "scale_up"
    )
