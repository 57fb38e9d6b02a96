"""Per-Machine and control-plane health from Pods, Nodes and etcd members."""

from __future__ import annotations

from kcp.api import conditions as c
from kcp.api.objects import MachineView
from kcp.controlplane.health import machine_health, pod_condition
from tests.unit.controlplane.builders import machine, node, pod
from tests.unit.controlplane.fakes import etcd_status

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")


def _pods(*nodes: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {f"{comp}-{n}": pod(comp, n) for n in nodes for comp in COMPONENTS}


def test_pod_conditions_read_like_cluster_api() -> None:
    kind = c.API_SERVER_POD_HEALTHY
    assert pod_condition(kind, pod("kube-apiserver", "a")).is_true
    missing = pod_condition(kind, None)
    assert (missing.status, missing.reason, missing.message) == (
        c.FALSE,
        "DoesNotExist",
        "Pod does not exist",
    )
    pending = pod("kube-apiserver", "a", phase="Pending")
    pending["status"]["conditions"][0]["status"] = "False"
    assert pod_condition(kind, pending).message == "Waiting to be scheduled"
    crashing = pod("etcd", "a", ready=False)
    crashing["status"]["containerStatuses"] = [
        {
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}},
        }
    ]
    failed = pod_condition(c.ETCD_POD_HEALTHY, crashing)
    assert (failed.status, failed.reason, failed.message) == (c.FALSE, "Failed", "CrashLoopBackOff")
    starting = pod_condition(kind, pod("kube-apiserver", "a", ready=False))
    assert starting.message == "Waiting for startup or readiness probes"
    assert pod_condition(kind, pod("kube-apiserver", "a", phase="Failed")).reason == "Failed"


def test_all_healthy() -> None:
    machines = [MachineView(machine(n)) for n in ("a", "b", "c")]
    health = machine_health(
        machines, {n: node(n) for n in "abc"}, _pods("a", "b", "c"), etcd_status(["a", "b", "c"])
    )
    assert health.etcd_cluster.is_true
    assert health.components.is_true
    assert health.etcd_members_match
    assert all(cond.is_true for conds in health.machines.values() for cond in conds)
    assert len(health.machines["a"]) == 5


def test_dead_etcd_member_is_named() -> None:
    machines = [MachineView(machine(n)) for n in ("a", "b", "c")]
    health = machine_health(
        machines,
        {n: node(n) for n in "abc"},
        _pods("a", "b", "c"),
        etcd_status(["a", "b", "c"], unhealthy=["b"]),
    )
    assert health.etcd_cluster.status == c.FALSE
    assert health.etcd_cluster.reason == c.NOT_HEALTHY_REASON
    assert "Machine b" in health.etcd_cluster.message
    assert "Etcd member b is not healthy" in health.etcd_cluster.message
    member = {x.type: x for x in health.machines["b"]}[c.ETCD_MEMBER_HEALTHY]
    assert member.status == c.FALSE


def test_member_without_machine_and_machine_without_member() -> None:
    machines = [MachineView(machine(n)) for n in ("a", "b")]
    health = machine_health(
        machines, {n: node(n) for n in "ab"}, _pods("a", "b"), etcd_status(["a", "zombie"])
    )
    assert not health.etcd_members_match
    assert "Etcd member zombie does not have a corresponding Machine" in health.etcd_cluster.message
    member_b = {x.type: x for x in health.machines["b"]}[c.ETCD_MEMBER_HEALTHY]
    assert "is not included" in member_b.message


def test_unreachable_workload_cluster_is_unknown_not_false() -> None:
    machines = [MachineView(machine("a"))]
    health = machine_health(
        machines,
        None,
        {},
        None,
        workload_error="cluster ns/c1 is being connected",
        workload_reason=c.CONNECTION_DOWN_REASON,
        etcd_error="cluster ns/c1 is being connected",
        etcd_reason=c.CONNECTION_DOWN_REASON,
    )
    assert health.etcd_cluster.status == c.UNKNOWN
    assert health.components.status == c.UNKNOWN
    assert health.components.reason == c.CONNECTION_DOWN_REASON
    assert all(x.status == c.UNKNOWN for x in health.machines["a"])


def test_provisioning_and_deleting_machines() -> None:
    provisioning = MachineView(machine("p", node=None))
    deleting = MachineView(machine("d", deleting=True))
    healthy = MachineView(machine("a"))
    health = machine_health(
        [provisioning, deleting, healthy],
        {"a": node("a"), "d": node("d")},
        _pods("a", "d"),
        etcd_status(["a", "d"]),
    )
    assert all(x.status == c.UNKNOWN for x in health.machines["p"])
    assert all(x.status == c.FALSE and x.reason == "Deleting" for x in health.machines["d"])
    # A deleting Machine is no news about the control plane's health.
    assert health.components.status == c.UNKNOWN  # p is still unknown
    assert "Machine d" not in health.components.message


def test_unreachable_node() -> None:
    health = machine_health(
        [MachineView(machine("a"))],
        {"a": node("a", ready="Unknown")},
        _pods("a"),
        etcd_status(["a"]),
    )
    pods = [x for x in health.machines["a"] if x.type != c.ETCD_MEMBER_HEALTHY]
    assert all(x.status == c.UNKNOWN and "stale" in x.message for x in pods)


def test_member_of_a_provisioning_machine_is_not_an_error() -> None:
    machines = [MachineView(machine("a")), MachineView(machine("b", node=None))]
    health = machine_health(machines, {"a": node("a")}, _pods("a"), etcd_status(["a", "b"]))
    assert "does not have a corresponding Machine" not in health.etcd_cluster.message
    assert health.etcd_cluster.status == c.UNKNOWN  # b is still provisioning


def test_silent_member_is_named_when_no_member_answers() -> None:
    from kcp.etcd import EtcdClusterStatus, MemberHealth

    silent = EtcdClusterStatus(
        leader_id=None,
        members=(),
        health=(
            MemberHealth(None, "", "127.0.0.5:2379", False, None, (), ("127.0.0.5:2379: refused",)),
        ),
        alarms=(),
        errors=("no etcd member answered (1 endpoint(s) tried)",),
    )
    health = machine_health(
        [MachineView(machine("a"))],
        {"a": node("a")},
        _pods("a"),
        silent,
        etcd_endpoints={"a": ("127.0.0.5:2379",)},
    )
    assert health.etcd_cluster.status == c.FALSE
    assert "Etcd member a (Machine a) is not healthy" in health.etcd_cluster.message


def test_every_listed_member_is_counted() -> None:
    machines = [MachineView(machine(n)) for n in ("a", "b", "c")]
    health = machine_health(
        machines,
        {n: node(n) for n in "abc"},
        _pods("a", "b", "c"),
        etcd_status(["a", "b", "c", "zombie"], unhealthy=["zombie"]),
    )
    votes = health.etcd_votes
    assert votes is not None
    assert (votes.voting, votes.healthy, votes.learners) == (4, 3, 0)
    assert votes.unhealthy == ("zombie",) and votes.unbacked == ("zombie",)
    assert health.etcd_cluster.status == c.FALSE
    assert (
        "Etcd member zombie does not have a corresponding Machine and is not healthy: etcd "
        "status at kube-system/etcd-zombie:2379 failed: unreachable"
    ) in health.etcd_cluster.message


def test_an_unhealthy_stranger_is_named_even_while_a_machine_provisions() -> None:
    machines = [MachineView(machine(n)) for n in ("a", "b")] + [
        MachineView(machine("p", node=None))
    ]
    health = machine_health(
        machines,
        {n: node(n) for n in "ab"},
        _pods("a", "b"),
        etcd_status(["a", "b", "zombie"], unhealthy=["zombie"]),
    )
    assert health.etcd_cluster.status == c.FALSE
    assert "Etcd member zombie does not have a corresponding Machine and is not healthy" in (
        health.etcd_cluster.message
    )
    assert health.etcd_votes is not None and health.etcd_votes.unbacked == ()


def test_the_dead_member_of_a_deleting_machine_still_counts() -> None:
    machines = [MachineView(machine("a")), MachineView(machine("d", deleting=True))]
    health = machine_health(
        machines,
        {n: node(n) for n in "ad"},
        _pods("a", "d"),
        etcd_status(["a", "d"], unhealthy=["d"]),
    )
    assert health.etcd_cluster.status == c.FALSE
    assert "Etcd member d of Machine d (being deleted) still votes and is not healthy" in (
        health.etcd_cluster.message
    )
    assert health.etcd_votes is not None and health.etcd_votes.healthy == 1
