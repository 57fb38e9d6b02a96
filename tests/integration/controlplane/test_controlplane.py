"""kcp end to end, the steady fleet: a real API server, real etcd, simulated machines, Cluster
API's core and CABPK, the controller in-process.

Both Cluster API samples come up; then the fleet is mostly watched: its HA cluster must
keep its three Machines with no rollout over 3 minutes (a killed etcd member, a label and
a timeout changed in place, add-on and version changes that create no Machine included), and
its clusters must reuse their etcd tunnels over 5. The changing fleet is in
test_lifecycle.py, on another worker. Every wait is bounded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import MachineView
from kcp.controlplane.expiry import recorded_expiry
from kcp.controlplane.upgrade import DAEMON_SET, DEPLOYMENT
from kcp.rest import Kube
from kcp.sim import faults
from kcp.testing.controlplane import LocalControlPlane
from kcp.tracker.identity import ClusterKey
from tests.integration.controlplane.e2e import (
    HA,
    HA_KCP,
    PROVISION_TIMEOUT,
    SINGLE,
    SINGLE_KCP,
    STABLE_WINDOW,
    TUNNEL_WINDOW,
    UPGRADED_DNS,
    Env,
    StabilityWatch,
    TunnelWindow,
    _apply_sample,
    _assert_one_key_per_cluster,
    _available,
    _condition,
    _delete_clusters,
    _event_reasons,
    _fleet,
    _kcp,
    _kubeadm_cluster_configuration,
    _machines,
    _refuse_version,
    _sleep_until,
    _wait,
    _workload_get,
    _workload_image,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def steady(control_plane: LocalControlPlane) -> Iterator[Env]:
    """The fleet that is watched: both samples, no Machine created after they are up."""
    with _fleet(control_plane, "steady") as env:
        yield env


# -- the tests, in order -----------------------------------------------------------------


def test_cluster_api_samples_become_available(steady: Env) -> None:
    env = steady
    started = time.monotonic()
    _apply_sample(env, "cluster-ha.yaml")
    _apply_sample(env, "cluster-single.yaml")
    members = _wait(
        "the HA sample to be Available with 3 ready machines and 3 etcd members",
        lambda: _available(env, HA_KCP, 3, HA),
        PROVISION_TIMEOUT,
        interval=3.0,
    )
    assert len(members) == 3
    _wait("the single sample to be Available", lambda: _available(env, SINGLE_KCP, 1, SINGLE), 120)
    # The single sample names its Machines with spec.machineNaming.template.
    [single_machine] = _machines(env, SINGLE)
    named = single_machine["metadata"]["name"]
    assert re.fullmatch(rf"{SINGLE}-cp-[bcdfghjklmnpqrstvwxz2456789]{{5}}", named), named
    assert single_machine["spec"]["bootstrap"]["configRef"]["name"] == named
    assert single_machine["spec"]["infrastructureRef"]["name"] == named
    ha = _kcp(env, HA_KCP)
    assert ha is not None
    assert ha["metadata"]["finalizers"] == [labels.KUBEADM_CONTROL_PLANE_FINALIZER]
    status = ha["status"]
    assert status["initialization"] == {"controlPlaneInitialized": True}
    assert status["selector"] == labels.control_plane_selector(HA)
    assert status["version"] == "v1.34.4"
    for kind in (
        c.INITIALIZED,
        c.CERTIFICATES_AVAILABLE,
        c.CONTROL_PLANE_COMPONENTS_HEALTHY,
        c.MACHINES_READY,
        c.MACHINES_UP_TO_DATE,
    ):
        assert _condition(ha, kind).get("status") == c.TRUE, kind
    for kind in (c.SCALING_UP, c.SCALING_DOWN, c.ROLLING_OUT, c.PAUSED, c.DELETING):
        assert _condition(ha, kind).get("status") == c.FALSE, kind
    machines = _machines(env, HA)
    cluster = env.kube.get(groups.CLUSTER, env.namespace, HA) or {}
    # Cluster API core copies the LocalCluster's failure domains to the
    # Cluster; kcp puts each of the three Machines in a different one.
    assert [fd["name"] for fd in cluster["status"]["failureDomains"]] == ["fd1", "fd2", "fd3"]
    placed = sorted(m["spec"].get("failureDomain") or "" for m in machines)
    assert placed == ["fd1", "fd2", "fd3"], placed
    assert all(m["status"].get("failureDomain") == m["spec"]["failureDomain"] for m in machines)
    for machine in machines:
        assert machine["metadata"]["labels"]["environment"] == "demo"  # from machineTemplate
        kinds = {x["type"]: x["status"] for x in machine["status"]["conditions"]}
        for kind in c.MACHINE_CONDITION_TYPES:
            assert kinds.get(kind) == c.TRUE, (machine["metadata"]["name"], kind)
    for suffix in ("ca", "etcd", "proxy", "sa", "kubeconfig"):
        secret = env.kube.get(groups.SECRET, env.namespace, f"{HA}-{suffix}")
        assert secret is not None and secret["type"] == "cluster.x-k8s.io/secret", suffix

    def expiries_known() -> bool:
        # kcp records it on the KubeadmConfig; Cluster API core copies it to the Machine.
        return all(
            recorded_expiry(
                MachineView(m),
                env.kube.get(groups.KUBEADM_CONFIG, env.namespace, m["metadata"]["name"]),
            )
            is not None
            for m in _machines(env, HA)
        )

    _wait("each Machine's certificate expiry to be known", expiries_known, 60)
    reasons = _event_reasons(env)
    assert "ControlPlaneInitializing" in reasons and "ScalingUp" in reasons, reasons
    print(f"samples available after {time.monotonic() - started:.0f}s")
    env.stability = StabilityWatch(env, HA, HA_KCP).start()


def test_dead_etcd_member_is_named_while_other_clusters_keep_reconciling(steady: Env) -> None:
    env = steady
    victim = sorted(m["metadata"]["name"] for m in _machines(env, HA))[0]
    node = victim  # the simulator names a Machine's node after its LocalMachine (same name)
    env.sim.inject(env.namespace, victim, faults.Component.ETCD, faults.Fault.KILLED)
    try:

        def named() -> Any:
            condition = _condition(_kcp(env, HA_KCP), c.ETCD_CLUSTER_HEALTHY)
            ok = condition.get("status") == c.FALSE and node in condition.get("message", "")
            return condition if ok else False

        started = time.monotonic()
        condition = _wait("EtcdClusterHealthy=False naming the dead member", named, 90)
        print(
            f"dead member reported after {time.monotonic() - started:.1f}s: {condition['message']}"
        )
        # The other cluster is reconciled as usual: a spec change is observed promptly.
        single = _kcp(env, SINGLE_KCP)
        assert single is not None
        before = single["metadata"]["generation"]
        started = time.monotonic()
        env.kube.merge_patch(
            groups.KUBEADM_CONTROL_PLANE,
            env.namespace,
            SINGLE_KCP,
            {"spec": {"machineTemplate": {"metadata": {"annotations": {"touched": "yes"}}}}},
        )
        _wait(
            "the healthy cluster to observe its new generation",
            lambda: (
                ((_kcp(env, SINGLE_KCP) or {}).get("status") or {}).get("observedGeneration", 0)
                > before
            ),
            30,
            interval=0.2,
        )
        observed = time.monotonic() - started
        print(f"healthy cluster observed a spec change in {observed:.2f}s")
        assert observed < 15
        assert _condition(_kcp(env, SINGLE_KCP), c.AVAILABLE).get("status") == c.TRUE
    finally:
        env.sim.restore(env.namespace, victim, faults.Component.ETCD)
    _wait("the HA cluster to be healthy again", lambda: _available(env, HA_KCP, 3, HA), 180, 2.0)
    env.tunnels = TunnelWindow(env)


def test_a_template_label_reaches_every_machine_in_place(steady: Env) -> None:
    """A label and an annotation added to machineTemplate.metadata, and a drain timeout, reach
    the HA cluster's 3 Machines, their KubeadmConfigs and LocalMachines within a minute, and a
    label removed from it leaves them; the Machines are the same ones (the stability watch
    fails on any new Machine or rollout)."""
    env = steady
    machines = _machines(env, HA)
    uids = {m["metadata"]["name"]: m["metadata"]["uid"] for m in machines}
    assert len(uids) == 3
    local_machine = env.kube.resource_for(groups.INFRASTRUCTURE_GROUP, "LocalMachine")
    started = time.monotonic()
    env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        env.namespace,
        HA_KCP,
        {
            "spec": {
                "machineTemplate": {
                    "metadata": {
                        "labels": {"kcp.test/in-place": "yes"},
                        "annotations": {"kcp.test/in-place": "yes"},
                    },
                    "spec": {"deletion": {"nodeDrainTimeoutSeconds": 600}},
                }
            }
        },
    )

    def carries(obj: dict[str, Any] | None) -> bool:
        metadata = (obj or {}).get("metadata") or {}
        return (
            (metadata.get("labels") or {}).get("kcp.test/in-place") == "yes"
            and (metadata.get("annotations") or {}).get("kcp.test/in-place") == "yes"
            and (metadata.get("labels") or {}).get("environment") == "demo"
        )

    def propagated() -> dict[str, str] | None:
        found = {m["metadata"]["name"]: m for m in _machines(env, HA)}
        if not all(
            carries(m) and (m["spec"].get("deletion") or {}).get("nodeDrainTimeoutSeconds") == 600
            for m in found.values()
        ):
            return None
        for name in found:
            for resource in (groups.KUBEADM_CONFIG, local_machine):
                if not carries(env.kube.get(resource, env.namespace, name)):
                    return None
        return {name: m["metadata"]["uid"] for name, m in found.items()}

    seen = _wait("the new label on every Machine, KubeadmConfig and LocalMachine", propagated, 60)
    print(f"template label on all 3 Machines in place after {time.monotonic() - started:.1f}s")
    assert seen == uids, "in place: the same three Machines"
    assert _condition(_kcp(env, HA_KCP), c.ROLLING_OUT).get("status") == c.FALSE

    # Removed from the template, a label goes too: the one just added and the one the
    # Machines were created with (kcp handed its create-time claim over to its applies).
    env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        env.namespace,
        HA_KCP,
        {"spec": {"machineTemplate": {"metadata": {"labels": {"environment": None}}}}},
    )

    def removed() -> bool:
        for name in uids:
            for resource in (groups.MACHINE, groups.KUBEADM_CONFIG, local_machine):
                obj_labels = (
                    (env.kube.get(resource, env.namespace, name) or {}).get("metadata") or {}
                ).get("labels") or {}
                if "environment" in obj_labels or labels.CLUSTER_NAME_LABEL not in obj_labels:
                    return False
        return True

    _wait("the removed label to be gone from every Machine and its objects", removed, 60)
    assert {m["metadata"]["name"]: m["metadata"]["uid"] for m in _machines(env, HA)} == uids


COREDNS_INSTALLED = "registry.k8s.io/coredns/coredns:v1.12.1"
"""What kubeadm 1.34 installs, and so the simulated `kubeadm init`."""


def test_a_downgrade_a_webhook_would_refuse_rolls_nothing_out(steady: Env) -> None:
    """v1.34.4 -> v1.34.3 on the single sample is refused with the versions that are
    allowed, and no Machine is made for it. (A skipped minor version is refused on the life
    fleet, test_lifecycle.py.)"""
    refused_condition = _refuse_version(steady, SINGLE, SINGLE_KCP, "v1.34.4", "v1.34.3")
    downgrade = refused_condition["message"]
    print(f"refused: {downgrade}")
    assert downgrade.startswith("spec.version v1.34.3 is a downgrade")
    assert any("v1.34.3 is a downgrade" in m for m in _event_reasons(steady)["InvalidSpec"])


def test_skip_annotations_leave_coredns_and_kube_proxy_alone(steady: Env) -> None:
    """The single sample carries skip-coredns and skip-kube-proxy: a newer CoreDNS asked for
    and a kube-proxy left behind stay as they are, until the annotations go."""
    env = steady
    single = _kcp(env, SINGLE_KCP) or {}
    assert labels.SKIP_COREDNS_ANNOTATION in single["metadata"]["annotations"]
    proxy = _workload_get(env, SINGLE, DAEMON_SET, "kube-proxy")
    assert proxy is not None
    containers = proxy["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "registry.k8s.io/kube-proxy:v1.34.4"
    behind = "registry.k8s.io/kube-proxy:v1.34.3"
    key = ClusterKey.from_object(env.kube.get(groups.CLUSTER, env.namespace, SINGLE) or {})
    workload = Kube(env.tracker.workload_client(key).api_client)
    workload.merge_patch(
        DAEMON_SET,
        "kube-system",
        "kube-proxy",
        {"spec": {"template": {"spec": {"containers": [{**containers[0], "image": behind}]}}}},
    )
    patched = env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        env.namespace,
        SINGLE_KCP,
        {"spec": {"kubeadmConfigSpec": UPGRADED_DNS}},
    )
    generation = patched["metadata"]["generation"]
    _wait(
        "the single KCP to observe the CoreDNS change",
        lambda: (
            ((_kcp(env, SINGLE_KCP) or {}).get("status") or {}).get("observedGeneration", 0)
            >= generation
        ),
        30,
        0.5,
    )
    time.sleep(4)  # a few more reconciles (every 3 s when healthy)
    assert _workload_image(env, SINGLE, DAEMON_SET, "kube-proxy") == behind
    assert _workload_image(env, SINGLE, DEPLOYMENT, "coredns") == COREDNS_INSTALLED
    assert "imageTag" not in (_kubeadm_cluster_configuration(env, SINGLE).get("dns") or {})
    # Without the annotations kcp brings both to the KCP at once.
    env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        env.namespace,
        SINGLE_KCP,
        {
            "metadata": {
                "annotations": {
                    labels.SKIP_COREDNS_ANNOTATION: None,
                    labels.SKIP_KUBE_PROXY_ANNOTATION: None,
                }
            }
        },
    )
    wanted = ("registry.k8s.io/kube-proxy:v1.34.4", "registry.k8s.io/coredns/coredns:v1.12.2")
    _wait(
        "kube-proxy and CoreDNS updated once the annotations are gone",
        lambda: (
            (
                _workload_image(env, SINGLE, DAEMON_SET, "kube-proxy"),
                _workload_image(env, SINGLE, DEPLOYMENT, "coredns"),
            )
            == wanted
        ),
        30,
    )


def test_settled_cluster_keeps_exactly_its_machines_with_no_rollout(steady: Env) -> None:
    """Beside the real core and CABPK (which write back into every KubeadmConfig) a settled
    3-replica cluster keeps its three Machines over a 2-minute window: nothing looks out of
    date, nothing rolls out. The window spans a killed etcd member and a machineTemplate label
    and drain timeout changed in place (neither must start a rollout) and the add-on and
    version changes of the tests above on the single cluster."""
    watch = steady.stability
    assert watch is not None, "the samples test did not start the watch"
    try:
        _sleep_until(watch.started + STABLE_WINDOW)
    finally:
        watch.stop()
    covered = time.monotonic() - watch.started
    print(f"{watch.samples} samples over {covered:.0f}s: machine sets seen {watch.machine_sets}")
    assert covered >= STABLE_WINDOW and watch.samples >= 30
    assert len(watch.machine_sets) == 1, watch.machine_sets
    assert len(next(iter(watch.machine_sets))) == 3
    assert watch.problems == [], watch.problems


def test_steady_clusters_reuse_their_etcd_tunnels(steady: Env) -> None:
    """Reconciled every few seconds for over 3 minutes, the settled clusters open no port-forward
    beyond one per member (3 + 1): tunnels are kept and reused, not opened per reconcile."""
    window = steady.tunnels
    assert window is not None, "the dead-member test did not start the window"
    _sleep_until(window.started + TUNNEL_WINDOW)
    opened, reconciled, open_now = window.deltas()
    covered = time.monotonic() - window.started
    print(
        f"over {covered:.0f}s: {reconciled:.0f} reconciles of 2 clusters, tunnels opened "
        f"{opened:.0f}, open {open_now:.0f}"
    )
    assert covered >= TUNNEL_WINDOW
    assert reconciled >= TUNNEL_WINDOW / 3.0  # health_requeue is 3 s per cluster
    assert opened <= 3 + 1
    assert open_now >= 3 + 1


def test_one_etcd_key_per_cluster(steady: Env) -> None:
    _assert_one_key_per_cluster(steady)


def test_deleting_clusters_removes_machines_finalizer_and_tracker_entry(steady: Env) -> None:
    _delete_clusters(steady, [(HA, HA_KCP), (SINGLE, SINGLE_KCP)])
