"""kcp end to end, the life fleet: a copy of the HA sample, beside the real Cluster API core
and CABPK, scales 3 -> 1 -> 3, upgrades (kubeadm-config and add-ons following), is refused
a skipped minor version, loses a Machine to `kubectl delete machine`, and is remediated
with a real MachineHealthCheck (and refused when quorum is at stake, and stopped after
maxRetry). Quorum is sampled throughout. Every wait is bounded.

Meanwhile Cluster API's own KubeadmControlPlane controller brings up a second cluster in
the same namespace (the two controllers kept apart by `--watch-filter`), and kcp takes it
over: Cluster API's controller stopped, kcp started with the same flags.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.controlplane.upgrade import DAEMON_SET, DEPLOYMENT
from kcp.sim import faults
from kcp.testing.controlplane import LocalControlPlane
from tests.integration.controlplane.e2e import (
    HA,
    HA_KCP,
    NODE_GRACE,
    PROVISION_TIMEOUT,
    UPGRADED_DNS,
    Env,
    QuorumWatch,
    _apply_sample,
    _assert_one_key_per_cluster,
    _available,
    _condition,
    _delete_clusters,
    _etcd_leader_node,
    _etcd_members,
    _event_reasons,
    _fleet,
    _kcp,
    _kubeadm_cluster_configuration,
    _machines,
    _refuse_version,
    _scale,
    _spare_the_leader,
    _wait,
    _workload_get,
    _workload_image,
)
from tests.integration.controlplane.takeover import TAKEOVER, Takeover
from tests.reliability.summary import SUMMARY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

LIFE = "life"
"""The fleet's kcp reconciles the objects labelled `cluster.x-k8s.io/watch-filter=life`;
Cluster API's KCP those labelled `capi`, until kcp takes them over (`takeover.py`)."""


@pytest.fixture(scope="module")
def life(control_plane: LocalControlPlane) -> Iterator[Env]:
    """The fleet that changes: a copy of the HA sample that scales, upgrades, loses Machines.

    Its Nodes go unreachable NODE_GRACE seconds after their kubelet dies (kube-controller-
    manager waits 40 s by default), so that remediation is quick to watch."""
    with _fleet(
        control_plane,
        "life",
        watch_filter=LIFE,
        node_monitor_grace_period=NODE_GRACE,
        node_lease_renew_interval=5.0,
    ) as env:
        yield env


@pytest.fixture(scope="module")
def takeover(life: Env, control_plane: LocalControlPlane) -> Iterator[Takeover]:
    """Cluster API's own KCP beside the fleet, the cluster it makes, and kcp's takeover."""
    run = Takeover(life, control_plane)
    try:
        yield run
    finally:
        run.stop()


def test_a_copy_of_the_ha_sample_becomes_available(life: Env) -> None:
    started = time.monotonic()
    _apply_sample(life, "cluster-ha.yaml")
    members = _wait(
        "the HA sample to be Available with 3 ready machines and 3 etcd members",
        lambda: _available(life, HA_KCP, 3, HA),
        PROVISION_TIMEOUT,
        interval=3.0,
    )
    assert len(members) == 3
    print(f"HA sample available after {time.monotonic() - started:.0f}s")


def test_cluster_apis_own_kcp_starts_a_second_cluster(life: Env, takeover: Takeover) -> None:
    """Cluster API's KCP (`--watch-filter=capi`; the fleet's kcp has `life`) creates a second
    cluster while the HA cluster scales; kcp takes it over in the background meanwhile."""
    takeover.start()
    _wait(
        "Cluster API's KCP to create the takeover cluster's first Machine",
        lambda: _machines(life, TAKEOVER),
        120,
    )


def test_scale_down_to_one_keeps_quorum(life: Env) -> None:
    env = life
    started = time.monotonic()
    with QuorumWatch(env, HA) as watch:
        _scale(env, HA_KCP, 1)
        members = _wait("scale down to 1", lambda: _available(env, HA_KCP, 1, HA), 240, 2.0)
    assert len(members) == 1
    assert len(_machines(env, HA)) == 1
    assert watch.samples > 0
    assert watch.violations == []
    reasons = _event_reasons(env)
    assert len(reasons.get("EtcdMemberRemoved", [])) >= 2, reasons
    assert len(reasons.get("ScalingDown", [])) >= 2, reasons
    print(f"scaled 3 -> 1 in {time.monotonic() - started:.0f}s ({watch.samples} quorum samples)")


def test_scale_up_back_to_three(life: Env) -> None:
    env = life
    started = time.monotonic()
    _scale(env, HA_KCP, 3)
    members = _wait("scale up to 3", lambda: _available(env, HA_KCP, 3, HA), PROVISION_TIMEOUT, 3.0)
    assert len(members) == 3
    assert len(_machines(env, HA)) == 3
    print(f"scaled 1 -> 3 in {time.monotonic() - started:.0f}s")


def test_version_upgrade_rolls_one_machine_at_a_time(life: Env) -> None:
    env = life
    old = {m["metadata"]["name"] for m in _machines(env, HA)}
    started = time.monotonic()
    most = [0]

    def upgraded() -> Any:
        machines = _machines(env, HA)
        most[0] = max(most[0], len(machines))
        names = {m["metadata"]["name"] for m in machines}
        done = (
            len(machines) == 3
            and not names & old
            and all(m["spec"]["version"] == "v1.34.5" for m in machines)
        )
        return done and _available(env, HA_KCP, 3, HA)

    with QuorumWatch(env, HA) as watch:
        # As a user upgrading: the Kubernetes version, and CoreDNS with it.
        env.kube.merge_patch(
            groups.KUBEADM_CONTROL_PLANE,
            env.namespace,
            HA_KCP,
            {"spec": {"version": "v1.34.5", "kubeadmConfigSpec": UPGRADED_DNS}},
        )
        _wait("every Machine to be replaced", upgraded, PROVISION_TIMEOUT * 1.5, 2.0)
    assert most[0] <= 4  # maxSurge 1: never more than one extra Machine
    assert watch.violations == []
    assert watch.max_members <= 4
    ha = _kcp(env, HA_KCP)
    assert ha is not None and ha["status"]["version"] == "v1.34.5"
    assert _condition(ha, c.ROLLING_OUT).get("status") == c.FALSE
    rolled = _event_reasons(env).get("RollingOut", [])
    assert any("Version v1.34.4, v1.34.5 required" in m for m in rolled), rolled
    print(
        f"rolled 3 Machines in {time.monotonic() - started:.0f}s ({watch.samples} quorum samples)"
    )


def test_upgrade_brought_kubeadm_config_kube_proxy_and_coredns_along(life: Env) -> None:
    """Cluster API's workload-side upgrade steps: kubeadm-config before the Machines, the
    add-ons once the rollout is done."""
    env = life

    wanted = (
        "v1.34.5",
        "registry.k8s.io/kube-proxy:v1.34.5",
        "registry.k8s.io/coredns/coredns:v1.12.2",
    )
    seen: list[Any] = [None]

    def upgraded() -> bool:
        found = (
            _kubeadm_cluster_configuration(env, HA).get("kubernetesVersion"),
            _workload_image(env, HA, DAEMON_SET, "kube-proxy"),
            _workload_image(env, HA, DEPLOYMENT, "coredns"),
        )
        if found != seen[0]:
            print(f"workload: kubeadm-config, kube-proxy, CoreDNS = {found}")
            seen[0] = found
        return found == wanted

    _wait("kubeadm-config, kube-proxy and CoreDNS upgraded", upgraded, 60)
    uploaded = _kubeadm_cluster_configuration(env, HA)
    assert uploaded["dns"] == {"imageTag": "v1.12.2"}
    assert uploaded["apiServer"]["extraArgs"] == [{"name": "audit-log-maxage", "value": "7"}]
    corefile = _workload_get(env, HA, groups.CONFIG_MAP, "coredns") or {}
    assert "kubernetes cluster.local" in corefile["data"]["Corefile"]  # left as it is
    reasons = _event_reasons(env)
    updated = reasons.get("KubeadmConfigUpdated", [])
    assert any("kubernetesVersion v1.34.5" in m for m in updated), reasons
    assert "KubeProxyUpdated" in reasons and "CoreDNSUpdated" in reasons, reasons


def test_a_skipped_minor_version_a_webhook_would_refuse_rolls_nothing_out(life: Env) -> None:
    """v1.34.5 -> v1.36.0 on the upgraded HA cluster (a minor skipped) is refused with the
    versions that are allowed, and no Machine is made for it."""
    skipped = _refuse_version(life, HA, HA_KCP, "v1.34.5", "v1.36.0")["message"]
    print(f"refused: {skipped}")
    assert skipped.startswith(
        "spec.version v1.36.0 skips a minor version: the Machines run v1.34.5"
    )
    assert "allowed versions: v1.34.5 or a later v1.34 patch release, or any v1.35" in skipped
    assert any("v1.36.0 skips a minor version" in m for m in _event_reasons(life)["InvalidSpec"])
    assert _kubeadm_cluster_configuration(life, HA)["kubernetesVersion"] == "v1.34.5"


def test_kcp_took_over_the_cluster_cluster_apis_kcp_made(takeover: Takeover) -> None:
    """The second cluster, made Available with 3 Machines by Cluster API's KCP, was handed
    to kcp (Cluster API's controller stopped, kcp started with the same flags): kcp reported
    it Available within a minute, replaced no Machine, changed no certificate Secret, moved
    a label change on Machines Cluster API's field managers labelled, then scaled it 3 -> 1,
    rolled the last Machine out to a new version, refused and then adopted it once orphaned,
    and deleted the cluster (`takeover.py`)."""
    for line in takeover.finish(timeout=600):
        print(line)


MEMBERS_MATCH_TIMEOUT = 120.0
"""Seconds from `kubectl delete machine` until etcd lists exactly the Machines' members."""


def test_kubectl_delete_machine_leaves_exactly_the_machines_members(life: Env) -> None:
    """A Machine deleted with the API, as `kubectl delete machine` does: core drains it and
    waits on kcp's pre-terminate hook, kcp removes its etcd member and releases the hook,
    core tears it down and kcp replaces it; etcd never keeps a member without a Machine."""
    env = life
    machines = _machines(env, HA)
    assert len(machines) == 3
    hook = labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION
    assert all(hook in m["metadata"]["annotations"] for m in machines)
    victim = sorted(machines, key=lambda m: m["metadata"]["name"])[0]
    name, node = victim["metadata"]["name"], victim["status"]["nodeRef"]["name"]
    seen: list[str] = []

    def members_match() -> Any:
        members = _etcd_members(env, HA)
        current = _machines(env, HA)
        seen.append(f"{len(members)} members {members} / {len(current)} Machines")
        ok = members and node not in members and len(members) == len(current)
        return members if ok else False

    started = time.monotonic()
    with QuorumWatch(env, HA) as watch:
        env.kube.delete(groups.MACHINE, env.namespace, name)
        members = _wait(
            "etcd to list exactly as many members as there are Machines",
            members_match,
            MEMBERS_MATCH_TIMEOUT,
            0.5,
        )
        matched = time.monotonic() - started
        _wait("3 healthy members again", lambda: _available(env, HA_KCP, 3, HA), 240, 2.0)
    healed = time.monotonic() - started
    assert watch.samples > 0 and watch.violations == [], watch.violations
    assert watch.max_members <= 3
    removed = _event_reasons(env).get("EtcdMemberRemoved", [])
    assert any(m.startswith(f"Removed etcd member {node} of Machine {name}") for m in removed)
    assert name not in {m["metadata"]["name"] for m in _machines(env, HA)}
    print(
        f"members == Machines {matched:.0f}s after the delete ({len(members)} each; "
        f"{seen[0]} -> {seen[-1]}), 3 healthy after {healed:.0f}s"
    )


# -- remediation, driven by Cluster API's MachineHealthCheck -------------------------------

MHC_TIMEOUT = 5
"""Seconds a Node may stay unreachable before the MachineHealthCheck marks its Machine."""
REMEDIATION_TIMEOUT = 240.0
"""Seconds from a dead node agent until the Machine is gone (grace, MHC, drain, member)."""


def _node_of(env: Env, machine: str) -> str:
    found = _machine(env, machine)
    assert found is not None, f"no Machine {machine}"
    return str(found["status"]["nodeRef"]["name"])


def _machine(env: Env, name: str) -> dict[str, Any] | None:
    return next((m for m in _machines(env, HA) if m["metadata"]["name"] == name), None)


def _health_check_passes(env: Env, name: str) -> bool:
    return _condition(_machine(env, name), c.HEALTH_CHECK_SUCCEEDED).get("status") == c.TRUE


def _newest(env: Env) -> str:
    machines = sorted(_machines(env, HA), key=lambda m: m["metadata"]["creationTimestamp"])
    return str(machines[-1]["metadata"]["name"])


def _remediation_for(env: Env, name: str) -> dict[str, Any]:
    value = (
        ((_machine(env, name) or {}).get("metadata") or {})
        .get("annotations", {})
        .get(labels.REMEDIATION_FOR_ANNOTATION)
    )
    return dict(json.loads(value)) if value else {}


def _remediated(env: Env, victim: str) -> Any:
    """Wait until `victim` is gone and 3 healthy members are back; seconds to each."""
    started = time.monotonic()
    _wait(
        f"Machine {victim} to be remediated (deleted)",
        lambda: _machine(env, victim) is None,
        REMEDIATION_TIMEOUT,
        1.0,
    )
    gone = time.monotonic() - started
    _wait("3 healthy members again", lambda: _available(env, HA_KCP, 3, HA), 240, 2.0)
    return gone, time.monotonic() - started


def test_dead_machine_is_remediated_once_then_retries_stop_at_max_retry(life: Env) -> None:
    """A real MachineHealthCheck watches the life fleet's control plane, whose
    spec.remediation allows no retry (maxRetry 0). One machine's node agent and processes
    are killed: its Node goes unreachable, the MachineHealthCheck marks the Machine, kcp
    deletes it (its etcd member goes from the pre-terminate hook) and the scale up replaces
    it, with quorum sampled the whole time. The replacement dies too, within
    minHealthyPeriod: that would be retry 1, so kcp stops — OwnerRemediated and Remediating
    say MaxRetry, and the Machine stays."""
    env = life
    _wait("3 healthy members to start from", lambda: _available(env, HA_KCP, 3, HA), 120, 2.0)
    env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        env.namespace,
        HA_KCP,
        {"spec": {"remediation": {"maxRetry": 0, "retryPeriodSeconds": 0}}},
    )
    check = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "MachineHealthCheck",
        "metadata": {"name": HA_KCP, "namespace": env.namespace},
        "spec": {
            "clusterName": HA,
            "selector": {"matchLabels": {labels.MACHINE_CONTROL_PLANE_LABEL: ""}},
            "checks": {
                "unhealthyNodeConditions": [
                    {"type": "Ready", "status": status, "timeoutSeconds": MHC_TIMEOUT}
                    for status in (c.UNKNOWN, c.FALSE)
                ]
            },
        },
    }
    env.kube.create(
        env.kube.resource_for("cluster.x-k8s.io", "MachineHealthCheck"), env.namespace, check
    )
    victim = sorted(_machines(env, HA), key=lambda m: m["metadata"]["name"])[0]
    _spare_the_leader(env, HA, victim["status"]["nodeRef"]["name"])
    victim = victim["metadata"]["name"]
    with QuorumWatch(env, HA) as watch:
        env.sim.kill_node(env.namespace, victim)
        gone, healed = _remediated(env, victim)
    assert watch.samples > 0 and watch.violations == [], watch.violations
    assert watch.max_members <= 3
    replacement = _newest(env)
    assert _remediation_for(env, replacement) | {"timestamp": None} == {
        "machine": victim,
        "timestamp": None,
        "retryCount": 0,
    }
    last = (_kcp(env, HA_KCP) or {})["status"]["lastRemediation"]
    assert (last["machine"], last["retryCount"]) == (victim, 0)
    reasons = _event_reasons(env)
    assert any(victim in m for m in reasons.get("MachineRemediation", [])), reasons
    assert any(victim in m for m in reasons.get("EtcdMemberRemoved", [])), reasons
    assert _condition(_kcp(env, HA_KCP), c.REMEDIATING).get("status") == c.FALSE
    print(
        f"dead node agent: Machine {victim} deleted after {gone:.0f}s, replaced by "
        f"{replacement}, 3 healthy after {healed:.0f}s ({watch.samples} quorum samples)"
    )
    SUMMARY.faults.append("node agent and processes killed (remediated)")
    SUMMARY.notes.append(
        f"remediation:          dead machine replaced, 3 healthy after {healed:.0f}s, "
        f"quorum kept over {watch.samples} samples"
    )

    with QuorumWatch(env, HA) as watch:
        before = {m["metadata"]["uid"] for m in _machines(env, HA)}
        _spare_the_leader(env, HA, _node_of(env, replacement))
        started = time.monotonic()
        env.sim.kill_node(env.namespace, replacement)

        def stopped() -> Any:
            owner = _condition(_machine(env, replacement), c.OWNER_REMEDIATED)
            return owner if "MaxRetry" in owner.get("message", "") else False

        owner = _wait("kcp to stop retrying", stopped, 180, 1.0)
        said = time.monotonic() - started
        time.sleep(5)  # more reconciles: still nothing deleted
        assert {m["metadata"]["uid"] for m in _machines(env, HA)} == before
        remediating = _condition(_kcp(env, HA_KCP), c.REMEDIATING)
        assert remediating.get("status") == c.TRUE and "MaxRetry" in remediating["message"]
        env.sim.restore_node(env.namespace, replacement)
        _wait("3 healthy members again", lambda: _available(env, HA_KCP, 3, HA), 240, 2.0)
        _wait(
            "Remediating to be False once the replacement is healthy again",
            lambda: _condition(_kcp(env, HA_KCP), c.REMEDIATING).get("status") == c.FALSE,
            60,
        )
    assert watch.violations == [], watch.violations
    print(f"replacement died too: stopped after {said:.0f}s: {owner['message']}")
    SUMMARY.faults.append("replacement's node agent killed (maxRetry 0: not remediated)")
    SUMMARY.notes.append(
        f"remediation:          the replacement's failure stopped at maxRetry 0 ({said:.0f}s)"
    )


def test_two_dead_of_three_are_not_remediated_and_the_condition_says_why(life: Env) -> None:
    """Two of three machines lose their node agent and API server, and one its etcd member
    too (with both members dead quorum would be lost, the Nodes could not even be marked):
    both are marked, neither can go without risking quorum (their members cannot be
    reached), Remediating and an Event say so, and nothing is deleted. Back one by one, they
    pass the health check and kcp drops its refusal."""
    env = life
    _wait("3 healthy members to start from", lambda: _available(env, HA_KCP, 3, HA), 120, 2.0)
    before = {m["metadata"]["uid"] for m in _machines(env, HA)}
    # The leader keeps running: killing it would start an election, a moment in which no
    # member sees a leader, which the quorum watch would rightly count against this test.
    leader = _wait("an etcd leader", lambda: _etcd_leader_node(env, HA), 30, 1.0)
    followers = [m for m in _machines(env, HA) if _node_of(env, m["metadata"]["name"]) != leader]
    dead, deaf = (str(m["metadata"]["name"]) for m in followers[:2])
    started = time.monotonic()

    def refused() -> Any:
        condition = _condition(_kcp(env, HA_KCP), c.REMEDIATING)
        ok = condition.get("status") == c.TRUE and "quorum" in condition.get("message", "")
        return condition if ok else False

    with QuorumWatch(env, HA) as watch:
        env.sim.kill_node(env.namespace, dead)
        env.sim.kill_node(env.namespace, deaf, keep=(faults.Component.ETCD,))
        condition = _wait("Remediating to say why nothing is remediated", refused, 180, 1.0)
        said = time.monotonic() - started
        time.sleep(5)  # more reconciles: still nothing deleted
        assert {m["metadata"]["uid"] for m in _machines(env, HA)} == before
        # The kubelets come back first: each Node is Ready, the health check passes again.
        for name in (dead, deaf):
            env.sim.restore(env.namespace, name, faults.Component.KUBELET)
            _wait(
                f"{name} to pass the health check", lambda n=name: _health_check_passes(env, n), 120
            )
        for name in (dead, deaf):
            env.sim.restore_node(env.namespace, name)
        _wait("3 healthy members again", lambda: _available(env, HA_KCP, 3, HA), 240, 2.0)
        _wait(
            "Remediating to be False",
            lambda: _condition(_kcp(env, HA_KCP), c.REMEDIATING).get("status") == c.FALSE,
            60,
        )
    assert {m["metadata"]["uid"] for m in _machines(env, HA)} == before
    assert watch.violations == [], watch.violations
    for name in (dead, deaf):
        assert _condition(_machine(env, name), c.OWNER_REMEDIATED) == {}
    blocked = _event_reasons(env).get("RemediationBlocked", [])
    assert any("quorum" in m for m in blocked), blocked
    print(f"two dead: refused after {said:.0f}s: {condition['message']}")
    SUMMARY.faults.append("two of three node agents killed (remediation refused)")
    SUMMARY.notes.append(
        f"remediation:          refused with two of three dead ({said:.0f}s to say why), "
        "nothing deleted"
    )


def test_one_etcd_key_per_cluster(life: Env) -> None:
    _assert_one_key_per_cluster(life)


def test_deleting_the_cluster_removes_machines_finalizer_and_tracker_entry(life: Env) -> None:
    _delete_clusters(life, [(HA, HA_KCP)])
