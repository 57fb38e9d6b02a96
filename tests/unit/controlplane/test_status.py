"""Status computation and the merge patch that keeps other writers' fields."""

from __future__ import annotations

import copy

import pytest

from kcp.api import conditions as c
from kcp.api.groups import KUBEADM_CONTROL_PLANE
from kcp.api.objects import ClusterView, MachineView
from kcp.controlplane.condition import Condition
from kcp.controlplane.health import machine_health
from kcp.controlplane.rollout import UpToDate
from kcp.controlplane.scaling import Action, Decision
from kcp.controlplane.scope import Scope
from kcp.controlplane.status import compute_status, lowest_version, write_conditions
from tests.unit.controlplane.builders import NOW, cluster, condition, kcp, machine, node, pod, ts
from tests.unit.controlplane.fakes import FakeKube, etcd_status

COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")


def _ready_machine(name: str, version: str = "v1.34.4") -> MachineView:
    return MachineView(
        machine(name, version=version, conditions=[condition(c.READY), condition(c.AVAILABLE)])
    )


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {x.type: x for x in conditions}


def _healthy_inputs(names: list[str], **kw: object) -> Scope:
    machines = [_ready_machine(n) for n in names]
    pods = {f"{comp}-{n}": pod(comp, n) for n in names for comp in COMPONENTS}
    health = machine_health(machines, {n: node(n) for n in names}, pods, etcd_status(names))
    return Scope(
        kcp=kcp(),
        cluster=ClusterView(cluster()),
        machines=machines,
        now=NOW,
        up_to_date={n: UpToDate(True) for n in names},
        health=health,
        certificates=Condition.true(c.CERTIFICATES_AVAILABLE, c.AVAILABLE_REASON),
        initialized=True,
        **kw,  # type: ignore[arg-type]
    )


def test_healthy_control_plane() -> None:
    fields, conditions = compute_status(_healthy_inputs(["a", "b", "c"]))
    assert fields == {
        "replicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "upToDateReplicas": 3,
        "selector": "cluster.x-k8s.io/cluster-name=c1,cluster.x-k8s.io/control-plane",
        "observedGeneration": 1,
        "initialization": {"controlPlaneInitialized": True},
        "version": "v1.34.4",
    }
    by_type = _by_type(conditions)
    for kind in (
        c.AVAILABLE,
        c.INITIALIZED,
        c.CERTIFICATES_AVAILABLE,
        c.ETCD_CLUSTER_HEALTHY,
        c.CONTROL_PLANE_COMPONENTS_HEALTHY,
        c.MACHINES_READY,
        c.MACHINES_UP_TO_DATE,
    ):
        assert by_type[kind].is_true, kind
    for kind in (c.ROLLING_OUT, c.SCALING_UP, c.SCALING_DOWN, c.REMEDIATING, c.DELETING, c.PAUSED):
        assert by_type[kind].status == c.FALSE, kind
    assert set(by_type) == set(c.KCP_CONDITION_TYPES)


def test_not_initialized_is_not_available() -> None:
    inputs = Scope(kcp=kcp(), cluster=ClusterView(cluster()), machines=[], now=NOW)
    fields, conditions = compute_status(inputs)
    by_type = _by_type(conditions)
    assert by_type[c.AVAILABLE].message == "Control plane not yet initialized"
    assert by_type[c.INITIALIZED].status == c.FALSE
    assert by_type[c.MACHINES_READY].reason == c.NO_REPLICAS_REASON
    assert by_type[c.SCALING_UP].message == "Scaling up from 0 to 3 replicas"
    assert fields["replicas"] == 0


def test_scaling_messages_say_what_blocks() -> None:
    inputs = _healthy_inputs(["a"])
    inputs.decision = Decision(
        Action.WAIT, "scaling up", blocked=("Machine a reports X condition is false",)
    )
    _, conditions = compute_status(inputs)
    assert _by_type(conditions)[c.SCALING_UP].message == (
        "Scaling up from 1 to 3 replicas is blocked because:\n"
        "* Machine a reports X condition is false"
    )


def test_rolling_out_lists_reasons_versions_first() -> None:
    inputs = _healthy_inputs(["a", "b", "c"])
    inputs.up_to_date = {
        "a": UpToDate(False, ("Version v1.33.0, v1.34.4 required",)),
        "b": UpToDate(False, ("KubeadmConfig is not up-to-date",)),
        "c": UpToDate(True),
    }
    fields, conditions = compute_status(inputs)
    rolling = _by_type(conditions)[c.ROLLING_OUT]
    assert rolling.is_true
    assert rolling.message == (
        "Rolling out 2 not up-to-date replicas\n* Version v1.33.0, v1.34.4 required\n"
        "* KubeadmConfig is not up-to-date"
    )
    assert fields["upToDateReplicas"] == 1
    assert _by_type(conditions)[c.MACHINES_UP_TO_DATE].status == c.FALSE


def test_etcd_without_quorum_is_not_available() -> None:
    names = ["a", "b", "c"]
    machines = [_ready_machine(n) for n in names]
    pods = {f"{comp}-{n}": pod(comp, n) for n in names for comp in COMPONENTS}
    health = machine_health(
        machines, {n: node(n) for n in names}, pods, etcd_status(names, unhealthy=["a", "b"])
    )
    inputs = Scope(
        kcp=kcp(),
        cluster=ClusterView(cluster()),
        machines=machines,
        now=NOW,
        health=health,
        initialized=True,
    )
    _, conditions = compute_status(inputs)
    available = _by_type(conditions)[c.AVAILABLE]
    assert available.status == c.FALSE
    assert "1 of 3 etcd members healthy, at least 2 required" in available.message


def _with_members(names: list[str], members: list[str], unhealthy: list[str]) -> Scope:
    inputs = _healthy_inputs(names)
    pods = {f"{comp}-{n}": pod(comp, n) for n in names for comp in COMPONENTS}
    inputs.health = machine_health(
        list(inputs.machines),
        {n: node(n) for n in names},
        pods,
        etcd_status(members, unhealthy=unhealthy),
    )
    return inputs


def test_available_counts_members_without_machines() -> None:
    """Two healthy Machines and two dead members left behind: 2 of 4 is no quorum."""
    _, conditions = compute_status(_with_members(["a", "b"], ["a", "b", "x", "y"], ["x", "y"]))
    available = _by_type(conditions)[c.AVAILABLE]
    assert available.status == c.FALSE
    assert "* 2 of 4 etcd members healthy, at least 3 required (etcd quorum)" in available.message
    assert "2 etcd members without a Machine (x, y)" in available.message


def test_a_stale_member_makes_available_false_and_names_it() -> None:
    _, conditions = compute_status(_with_members(["a", "b", "c"], ["a", "b", "c", "x"], ["x"]))
    by_type = _by_type(conditions)
    assert by_type[c.AVAILABLE].status == c.FALSE
    assert by_type[c.AVAILABLE].message == (
        "* The list of etcd members does not match the list of Machines: 1 etcd member "
        "without a Machine (x)"
    )
    assert by_type[c.ETCD_CLUSTER_HEALTHY].status == c.FALSE
    assert "Etcd member x does not have a corresponding Machine" in (
        by_type[c.ETCD_CLUSTER_HEALTHY].message
    )


def test_available_says_how_little_failure_it_can_take() -> None:
    _, conditions = compute_status(_with_members(["a", "b", "c"], ["a", "b", "c"], ["c"]))
    available = _by_type(conditions)[c.AVAILABLE]
    assert available.is_true
    assert available.message == "* 2 of 3 etcd members healthy, at least 2 required (etcd quorum)"


def test_lowest_version() -> None:
    machines = [
        MachineView(machine("a", version="v1.34.10")),
        MachineView(machine("b", version="v1.34.9")),
    ]
    assert lowest_version(machines) == "v1.34.9"
    assert lowest_version([]) is None


def test_status_patch_keeps_a_concurrent_writers_condition() -> None:
    kube = FakeKube()
    obj = kcp()
    obj["status"] = {"conditions": [condition("SomeoneElses", c.TRUE)], "someoneElsesField": 7}
    stored = kube.put(obj)
    stale = copy.deepcopy(stored)
    # Another writer adds a condition after we read the object.
    kube.merge_patch(
        KUBEADM_CONTROL_PLANE,
        "ns",
        "cp",
        {"status": {"conditions": [*stored["status"]["conditions"], condition("Late", c.FALSE)]}},
        subresource="status",
    )
    written = write_conditions(
        kube,
        KUBEADM_CONTROL_PLANE,
        stale,
        [Condition.true(c.AVAILABLE, c.AVAILABLE_REASON)],
        now=NOW,
        fields={"replicas": 3},
    )
    types = {x["type"] for x in written["status"]["conditions"]}
    assert types == {"SomeoneElses", "Late", c.AVAILABLE}
    assert written["status"]["someoneElsesField"] == 7
    assert written["status"]["replicas"] == 3
    assert ("patch/status", "KubeadmControlPlane", "cp") in kube.calls


def test_unchanged_status_is_not_written() -> None:
    kube = FakeKube()
    stored = kube.put(kcp())
    first = write_conditions(
        kube,
        KUBEADM_CONTROL_PLANE,
        stored,
        [Condition.true(c.AVAILABLE, "Available")],
        now=NOW,
        fields={"replicas": 1},
    )
    calls = len(kube.calls)
    write_conditions(
        kube,
        KUBEADM_CONTROL_PLANE,
        first,
        [Condition.true(c.AVAILABLE, "Available")],
        now=NOW,
        fields={"replicas": 1},
    )
    assert len(kube.calls) == calls


@pytest.mark.parametrize("status", [c.TRUE, c.FALSE])
def test_transition_time_moves_only_on_status_change(status: str) -> None:
    kube = FakeKube()
    obj = kcp()
    obj["status"] = {"conditions": [condition(c.AVAILABLE, c.TRUE, "Available")]}
    stored = kube.put(obj)
    written = write_conditions(
        kube,
        KUBEADM_CONTROL_PLANE,
        stored,
        [Condition(c.AVAILABLE, status, "Available", "m")],
        now=NOW,
    )
    moved = written["status"]["conditions"][0]["lastTransitionTime"] == ts(NOW)
    assert moved == (status == c.FALSE)


def test_a_lost_race_takes_the_winner_from_the_cache_not_a_live_read() -> None:
    kube = FakeKube()
    stored = kube.put(kcp())
    stale = copy.deepcopy(stored)
    winner = kube.merge_patch(
        KUBEADM_CONTROL_PLANE,
        "ns",
        "cp",
        {"status": {"conditions": [condition("SomeoneElses", c.TRUE)]}},
        subresource="status",
    )
    kube.calls.clear()
    written = write_conditions(
        kube,
        KUBEADM_CONTROL_PLANE,
        stale,
        [Condition.true(c.AVAILABLE, c.AVAILABLE_REASON)],
        now=NOW,
        cached=lambda: winner,
    )
    assert {x["type"] for x in written["status"]["conditions"]} == {"SomeoneElses", c.AVAILABLE}
    assert ("get", "KubeadmControlPlane", "cp") not in kube.calls
    assert kube.calls.count(("patch/status", "KubeadmControlPlane", "cp")) == 2


def test_a_cache_that_does_not_catch_up_is_not_waited_for_long() -> None:
    kube = FakeKube()
    stored = kube.put(kcp())
    stale = copy.deepcopy(stored)
    kube.merge_patch(
        KUBEADM_CONTROL_PLANE, "ns", "cp", {"status": {"replicas": 2}}, subresource="status"
    )
    written = write_conditions(
        kube,
        KUBEADM_CONTROL_PLANE,
        stale,
        [Condition.true(c.AVAILABLE, c.AVAILABLE_REASON)],
        now=NOW,
        fields={"replicas": 3},
        cached=lambda: stale,  # still the version that lost
    )
    assert written["status"]["replicas"] == 3
    assert ("get", "KubeadmControlPlane", "cp") in kube.calls
