"""kcp end to end: a real API server, real etcd, simulated machines, the controller in-process.

The tests of this module share two fleets that run side by side, each in its own
namespace with its own simulator, Cluster API core and CABPK, tracker and
controller (and so its own metrics):

- the *steady* fleet holds the two Cluster API samples. Once they are Available it
  is only watched (plus one killed etcd member, and add-on and version changes
  that create no Machine): its HA cluster must keep its three Machines with no
  rollout over 3 minutes, and its clusters must reuse their etcd tunnels over 5;
- the *life* fleet holds a second copy of the HA sample, which meanwhile scales
  down and up, upgrades, loses a Machine to `kubectl delete machine`, and then,
  watched by a MachineHealthCheck, machines whose node agent died: remediated one
  at a time, refused when quorum is at stake, no longer retried after maxRetry.

Running the life fleet's changes inside the steady fleet's windows keeps the
module's wall time near the longest window instead of their sum (the machines
take a while to start on two cores). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import MachineView
from kcp.controlplane.client import Kube
from kcp.controlplane.controller import ControlPlaneController, setup
from kcp.controlplane.expiry import recorded_expiry
from kcp.controlplane.reconciler import ReconcilerOptions
from kcp.controlplane.upgrade import DAEMON_SET, DEPLOYMENT
from kcp.etcd import EtcdTimeouts, cluster_status
from kcp.runtime.manager import Manager
from kcp.runtime.metrics import new_registry
from kcp.runtime.options import ManagerOptions
from kcp.testing.controlplane import LocalControlPlane
from kcp.tracker.identity import ClusterKey
from kcp.tracker.options import TrackerOptions
from kcp.tracker.tracker import Tracker
from tests.reliability.conftest import SUMMARY

sim_module = pytest.importorskip("kcp.sim.simulator")
faults = pytest.importorskip("kcp.sim.faults")
sim_options = pytest.importorskip("kcp.sim.options")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SAMPLES = Path(__file__).resolve().parents[3] / "config" / "samples"
HA, SINGLE = "ha", "single"
HA_KCP, SINGLE_KCP = "ha-control-plane", "single-control-plane"
PROVISION_TIMEOUT = 420.0
"""Seconds for Machines to come up: each starts a real etcd and kube-apiserver (two cores)."""
NODE_GRACE = 20.0
"""Seconds without a renewed Lease before the life fleet's Nodes are marked unreachable."""


@dataclass
class Env:
    namespace: str
    kube: Kube
    sim: Any
    tracker: Tracker
    controller: ControlPlaneController
    registry: Any
    created_clusters: set[str] = field(default_factory=set)
    stability: StabilityWatch | None = None
    tunnels: TunnelWindow | None = None


def _wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


@contextlib.contextmanager
def _fleet(control_plane: LocalControlPlane, role: str, **sim_settings: Any) -> Iterator[Env]:
    """A namespace with its own simulator (and Cluster API controllers) and kcp controller."""
    namespace = f"kcp-{role}-{uuid.uuid4().hex[:6]}"
    admin = Kube(control_plane.api_client())
    admin.create(groups.NAMESPACE, None, {"metadata": {"name": namespace}})
    sim = sim_module.Simulator(
        control_plane.api_client(),
        sim_options.SimOptions(
            namespace=namespace, kubeconfig=control_plane.kubeconfig_path, **sim_settings
        ),
    )
    sim.start()
    api = control_plane.api_client()
    registry = new_registry(process_collectors=False)
    manager = Manager(
        ManagerOptions(
            health_addr="0",
            metrics_bind_addr="0",
            namespace=namespace,
            concurrency=4,
            kube_api_qps=200,
            kube_api_burst=300,
        ),
        api_client=api,
        registry=registry,
    )
    tracker = Tracker.for_api_client(api, TrackerOptions(probe_interval=2.0), registry=registry)
    controller = setup(
        manager,
        api,
        tracker,
        namespace=namespace,
        options=ReconcilerOptions(
            etcd_access="port-forward",
            waiting_requeue=1.0,
            not_initialized_requeue=2.0,
            unhealthy_requeue=2.0,
            health_requeue=3.0,
        ),
    )
    manager.start()
    try:
        yield Env(namespace, admin, sim, tracker, controller, registry)
    finally:
        manager.stop(timeout=10)
        tracker.close()
        sim.stop()
        with contextlib.suppress(Exception):  # the test control plane goes away anyway
            admin.delete(groups.NAMESPACE, None, namespace)


@pytest.fixture(scope="module")
def steady(control_plane: LocalControlPlane) -> Iterator[Env]:
    """The fleet that is watched: both samples, no Machine created after they are up."""
    with _fleet(control_plane, "steady") as env:
        yield env


@pytest.fixture(scope="module")
def life(control_plane: LocalControlPlane) -> Iterator[Env]:
    """The fleet that changes: a copy of the HA sample that scales, upgrades, loses Machines.

    Its Nodes go unreachable NODE_GRACE seconds after their kubelet dies (kube-controller-
    manager waits 40 s by default), so that remediation is quick to watch."""
    with _fleet(
        control_plane, "life", node_monitor_grace_period=NODE_GRACE, node_lease_renew_interval=5.0
    ) as env:
        yield env


# -- helpers ------------------------------------------------------------------------------


def _apply_sample(env: Env, filename: str) -> None:
    for document in yaml.safe_load_all((SAMPLES / filename).read_text()):
        if not document:
            continue
        document["metadata"]["namespace"] = env.namespace
        group, _, _version = str(document["apiVersion"]).rpartition("/")
        resource = env.kube.resource_for(group, document["kind"])
        env.kube.create(resource, env.namespace, document)
        if document["kind"] == "Cluster":
            env.created_clusters.add(document["metadata"]["name"])


def _kcp(env: Env, name: str) -> dict[str, Any] | None:
    return env.kube.get(groups.KUBEADM_CONTROL_PLANE, env.namespace, name)


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    return (c.get_condition(obj, kind) if obj else None) or {}


def _machines(env: Env, cluster: str) -> list[dict[str, Any]]:
    return [
        m
        for m in env.kube.list(
            groups.MACHINE, env.namespace, label_selector=labels.control_plane_selector(cluster)
        )
    ]


def _etcd_members(env: Env, cluster: str) -> list[str]:
    sim_cluster = env.sim.cluster(env.namespace, cluster)
    if sim_cluster is None or sim_cluster.etcd_tls is None:
        return []
    endpoints = sim_cluster.etcd_endpoints()
    if not endpoints:
        return []
    status = cluster_status(
        endpoints, tls=sim_cluster.etcd_tls, timeouts=EtcdTimeouts(dial=3.0, call=3.0)
    )
    return sorted(m.name for m in status.members)


def _available(env: Env, name: str, replicas: int, cluster: str) -> Any:
    obj = _kcp(env, name)
    status = (obj or {}).get("status") or {}
    ready = (
        _condition(obj, c.AVAILABLE).get("status") == c.TRUE
        and _condition(obj, c.ETCD_CLUSTER_HEALTHY).get("status") == c.TRUE
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
        and status.get("upToDateReplicas") == replicas
    )
    if not ready:
        return False
    members = _etcd_members(env, cluster)
    return members if len(members) == replicas else False


def _summary(env: Env, name: str) -> str:
    obj = _kcp(env, name) or {}
    status = obj.get("status") or {}
    conds = {
        x["type"]: f"{x['status']}:{x.get('message', '')[:160]}"
        for x in status.get("conditions") or []
    }
    counts = {k: status.get(k) for k in ("replicas", "readyReplicas", "upToDateReplicas")}
    return f"{counts} {conds}"


class QuorumWatch:
    """Polls a cluster's etcd twice a second and records every moment quorum was missing."""

    def __init__(self, env: Env, cluster: str) -> None:
        self.env = env
        self.cluster = cluster
        self.samples = 0
        self.violations: list[str] = []
        self.max_members = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QuorumWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        sim_cluster = self.env.sim.cluster(self.env.namespace, self.cluster)
        while not self._stop.wait(0.5):
            endpoints = sim_cluster.etcd_endpoints()
            if not endpoints:
                continue
            status = cluster_status(
                endpoints, tls=sim_cluster.etcd_tls, timeouts=EtcdTimeouts(dial=2.0, call=2.0)
            )
            voting = [m for m in status.members if not m.is_learner]
            if not voting:
                continue
            self.samples += 1
            self.max_members = max(self.max_members, len(voting))
            ids = {m.id for m in voting}
            healthy = [
                h
                for h in status.health
                if h.member_id in ids and h.status is not None and h.status.has_leader
            ]
            needed = len(voting) // 2 + 1
            if len(healthy) < needed and self._still_members(sim_cluster, ids, healthy):
                self.violations.append(
                    f"{len(healthy)} of {len(voting)} members see a leader: "
                    f"{[(h.name, h.errors) for h in status.health]}"
                )

    @staticmethod
    def _still_members(sim_cluster: Any, ids: set[int], healthy: list[Any]) -> bool:
        """Whether the members that saw no leader are still members a moment later.

        A member removed from the cluster stops itself: sampled between the member
        list and its own status, it looks like a member without a leader. Quorum is
        missing only if it is still listed once etcd answers again."""
        silent = ids - {h.member_id for h in healthy}
        fresh = cluster_status(
            sim_cluster.etcd_endpoints(),
            tls=sim_cluster.etcd_tls,
            timeouts=EtcdTimeouts(dial=2.0, call=2.0),
        )
        listed = {m.id for m in fresh.members if not m.is_learner}
        return not listed or bool(silent & listed)


STABLE_WINDOW = 180.0
"""Seconds a settled cluster is watched for Machines coming or going."""
TUNNEL_WINDOW = 300.0
"""Seconds the settled clusters are watched for new etcd tunnels."""


class StabilityWatch:
    """Samples a cluster's Machines and rollout state every 2 s in a thread."""

    def __init__(self, env: Env, cluster: str, control_plane: str) -> None:
        self.env, self.cluster, self.control_plane = env, cluster, control_plane
        self.samples = 0
        self.machine_sets: set[frozenset[str]] = set()
        self.problems: list[str] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stability-watch", daemon=True)

    def start(self) -> StabilityWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            try:
                uids = frozenset(m["metadata"]["uid"] for m in _machines(self.env, self.cluster))
                kcp = _kcp(self.env, self.control_plane)
            except Exception:  # a slow API answer is not instability
                continue
            self.samples += 1
            self.machine_sets.add(uids)
            rolling = _condition(kcp, c.ROLLING_OUT)
            up_to_date = ((kcp or {}).get("status") or {}).get("upToDateReplicas")
            if rolling.get("status") == c.TRUE or up_to_date != 3:
                self.problems.append(
                    f"{time.monotonic() - self.started:.0f}s: RollingOut="
                    f"{rolling.get('status')} {rolling.get('message', '')[:200]!r} "
                    f"upToDateReplicas={up_to_date}"
                )


def _event_reasons(env: Env) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for event in env.kube.list(groups.EVENT, env.namespace):
        if (event.get("source") or {}).get("component") == "kubeadmcontrolplane-controller":
            found.setdefault(str(event.get("reason")), []).append(str(event.get("message")))
    return found


def _scale(env: Env, name: str, replicas: int) -> None:
    env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE, env.namespace, name, {"spec": {"replicas": replicas}}
    )


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def _metric(env: Env, name: str, **labels: str) -> float:
    return env.registry.get_sample_value(name, labels or None) or 0.0


def _reconciles(env: Env, *results: str) -> float:
    return sum(
        _metric(
            env, "controller_runtime_reconcile_total", controller="kubeadmcontrolplane", result=r
        )
        for r in results
    )


class TunnelWindow:
    """The steady fleet's tunnel and reconcile counters at the start of its window."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.started = time.monotonic()
        self.opened = _metric(env, "kcp_tracker_tunnels_opened_total")
        self.reconciles = _reconciles(env, "requeue_after")

    def deltas(self) -> tuple[float, float, float]:
        """Tunnels opened and reconciles since the start, and tunnels open now."""
        return (
            _metric(self.env, "kcp_tracker_tunnels_opened_total") - self.opened,
            _reconciles(self.env, "requeue_after") - self.reconciles,
            _metric(self.env, "kcp_tracker_tunnels_open"),
        )


# -- the tests, in the order of a cluster's life ------------------------------------------


def test_cluster_api_samples_become_available(steady: Env, life: Env) -> None:
    env = steady
    started = time.monotonic()
    _apply_sample(steady, "cluster-ha.yaml")
    _apply_sample(steady, "cluster-single.yaml")
    _apply_sample(life, "cluster-ha.yaml")
    for fleet in (steady, life):
        members = _wait(
            f"the {fleet.namespace} HA sample to be Available with 3 ready machines and 3 members",
            lambda fleet=fleet: _available(fleet, HA_KCP, 3, HA),
            PROVISION_TIMEOUT,
            interval=3.0,
        )
        assert len(members) == 3
    _wait("the single sample to be Available", lambda: _available(env, SINGLE_KCP, 1, SINGLE), 120)
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


UPGRADED_DNS = {"clusterConfiguration": {"dns": {"imageTag": "v1.12.2"}}}
COREDNS_INSTALLED = "registry.k8s.io/coredns/coredns:v1.12.1"
"""What kubeadm 1.34 installs, and so the simulated `kubeadm init`."""


def _workload_get(env: Env, cluster: str, resource: Any, name: str) -> dict[str, Any] | None:
    """An object in the workload cluster's kube-system, through kcp's tracker (None: unknown)."""
    key = ClusterKey.from_object(env.kube.get(groups.CLUSTER, env.namespace, cluster) or {})
    try:
        return Kube(env.tracker.workload_client(key).api_client).get(resource, "kube-system", name)
    except Exception:  # not connected right now: the caller polls
        return None


def _workload_image(env: Env, cluster: str, resource: Any, name: str) -> str | None:
    obj = _workload_get(env, cluster, resource, name) or {}
    containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or [{}]
    return containers[0].get("image")


def _kubeadm_cluster_configuration(env: Env, cluster: str) -> dict[str, Any]:
    config_map = _workload_get(env, cluster, groups.CONFIG_MAP, "kubeadm-config") or {}
    loaded = yaml.safe_load((config_map.get("data") or {}).get("ClusterConfiguration") or "{}")
    return loaded if isinstance(loaded, dict) else {}


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


def test_version_changes_a_webhook_would_refuse_roll_nothing_out(steady: Env, life: Env) -> None:
    """v1.34 -> v1.36 on the upgraded HA cluster (a minor skipped) and a downgrade on the
    single one: each is refused with the versions that are allowed, and no Machine is made
    for it."""
    # (fleet, cluster, control plane, version it runs, version refused)
    refused = [
        (life, HA, HA_KCP, "v1.34.5", "v1.36.0"),
        (steady, SINGLE, SINGLE_KCP, "v1.34.4", "v1.34.3"),
    ]

    def machine_names() -> list[list[str]]:
        return [sorted(m["metadata"]["name"] for m in _machines(e, n)) for e, n, *_ in refused]

    def patch_versions(index: int) -> None:
        for fleet, _cluster, name, *versions in refused:
            fleet.kube.merge_patch(
                groups.KUBEADM_CONTROL_PLANE,
                fleet.namespace,
                name,
                {"spec": {"version": versions[index]}},
            )

    def rolling_out() -> list[dict[str, Any]]:
        return [_condition(_kcp(e, name), c.ROLLING_OUT) for e, _, name, *_ in refused]

    def named() -> Any:
        found = rolling_out()
        ok = all(
            x.get("reason") == "InvalidSpec" and "allowed versions" in x.get("message", "")
            for x in found
        )
        return found if ok else False

    machines = machine_names()
    patch_versions(1)
    try:
        found = _wait("RollingOut to name the allowed versions", named, 30, 0.5)
        time.sleep(3)  # more reconciles: still nothing rolls out
        assert machine_names() == machines
    finally:
        patch_versions(0)
    skipped, downgrade = found[0]["message"], found[1]["message"]
    print(f"refused:\n  {skipped}\n  {downgrade}")
    assert skipped.startswith(
        "spec.version v1.36.0 skips a minor version: the Machines run v1.34.5"
    )
    assert "allowed versions: v1.34.5 or a later v1.34 patch release, or any v1.35" in skipped
    assert downgrade.startswith("spec.version v1.34.3 is a downgrade")
    assert any("v1.36.0 skips a minor version" in m for m in _event_reasons(life)["InvalidSpec"])
    assert any("v1.34.3 is a downgrade" in m for m in _event_reasons(steady)["InvalidSpec"])
    assert _kubeadm_cluster_configuration(life, HA)["kubernetesVersion"] == "v1.34.5"
    _wait(
        "both to settle back with nothing to roll out",
        lambda: all(x.get("status") == c.FALSE for x in rolling_out()),
        30,
    )


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


def test_machine_whose_node_agent_died_is_remediated_keeping_quorum(life: Env) -> None:
    """A real MachineHealthCheck watches the life fleet's control plane. One machine's node
    agent and processes are killed: its Node goes unreachable, the MachineHealthCheck marks
    the Machine, kcp deletes it (its etcd member goes from the pre-terminate hook) and the
    scale up replaces it, with quorum sampled the whole time."""
    env = life
    _wait("3 healthy members to start from", lambda: _available(env, HA_KCP, 3, HA), 120, 2.0)
    env.kube.merge_patch(
        groups.KUBEADM_CONTROL_PLANE,
        env.namespace,
        HA_KCP,
        {"spec": {"remediation": {"maxRetry": 1, "retryPeriodSeconds": 0}}},
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
    victim = sorted(m["metadata"]["name"] for m in _machines(env, HA))[0]
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


def test_two_dead_of_three_are_not_remediated_and_the_condition_says_why(life: Env) -> None:
    """Two of three machines lose their node agent and API server, and one its etcd member
    too (with both members dead quorum would be lost, the Nodes could not even be marked):
    both are marked, neither can go without risking quorum (their members cannot be
    reached), Remediating and an Event say so, and nothing is deleted. Back one by one, they
    pass the health check and kcp drops its refusal."""
    env = life
    _wait("3 healthy members to start from", lambda: _available(env, HA_KCP, 3, HA), 120, 2.0)
    before = {m["metadata"]["uid"] for m in _machines(env, HA)}
    oldest = sorted(_machines(env, HA), key=lambda m: m["metadata"]["creationTimestamp"])
    dead, deaf = (str(m["metadata"]["name"]) for m in oldest[:2])
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


def test_remediation_retries_stop_after_max_retry(life: Env) -> None:
    """spec.remediation.maxRetry is 1. The replacement made by the first remediation dies
    too: that is retry 1, and its own replacement says so. When that one dies as well, kcp
    stops: OwnerRemediated and Remediating say MaxRetry, and the Machine stays."""
    env = life
    _wait("3 healthy members to start from", lambda: _available(env, HA_KCP, 3, HA), 120, 2.0)
    first = _newest(env)
    assert _remediation_for(env, first).get("retryCount") == 0
    with QuorumWatch(env, HA) as watch:
        env.sim.kill_node(env.namespace, first)
        _, healed = _remediated(env, first)
        second = _newest(env)
        assert _remediation_for(env, second).get("retryCount") == 1
        assert (_kcp(env, HA_KCP) or {})["status"]["lastRemediation"]["retryCount"] == 1
        before = {m["metadata"]["uid"] for m in _machines(env, HA)}
        started = time.monotonic()
        env.sim.kill_node(env.namespace, second)

        def stopped() -> Any:
            owner = _condition(_machine(env, second), c.OWNER_REMEDIATED)
            return owner if "MaxRetry" in owner.get("message", "") else False

        owner = _wait("kcp to stop retrying", stopped, 180, 1.0)
        said = time.monotonic() - started
        time.sleep(5)
        assert {m["metadata"]["uid"] for m in _machines(env, HA)} == before
        remediating = _condition(_kcp(env, HA_KCP), c.REMEDIATING)
        assert remediating.get("status") == c.TRUE and "MaxRetry" in remediating["message"]
        env.sim.restore_node(env.namespace, second)
        _wait("3 healthy members again", lambda: _available(env, HA_KCP, 3, HA), 240, 2.0)
    assert watch.violations == [], watch.violations
    print(f"retry 1 healed after {healed:.0f}s; stopped after {said:.0f}s: {owner['message']}")
    SUMMARY.faults.append("replacement's node agent killed twice (retry, then maxRetry)")
    SUMMARY.notes.append(
        f"remediation:          retry 1 healed in {healed:.0f}s, then stopped at maxRetry 1"
    )


def test_settled_cluster_keeps_exactly_its_machines_with_no_rollout(steady: Env) -> None:
    """Beside the real core and CABPK (which write back into every KubeadmConfig) a settled
    3-replica cluster keeps its three Machines over a 3-minute window: nothing looks out of
    date, nothing rolls out. The window spans a killed etcd member (which must not start a
    rollout either) and the add-on and version changes of the tests above."""
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
    """Reconciled every few seconds for 5 minutes, the settled clusters open no port-forward
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


def test_one_etcd_key_per_cluster(steady: Env, life: Env) -> None:
    for env in (steady, life):
        tracked = {key.name for key in env.tracker.clusters()}
        assert tracked == env.created_clusters
        keys = env.registry.get_sample_value(
            "kcp_tracker_keys_generated_total", {"algorithm": "rsa-2048"}
        )
        reconciles = _reconciles(env, "success", "requeue_after", "requeue", "error")
        print(
            f"{env.namespace}: {reconciles:.0f} reconciles of "
            f"{len(env.created_clusters)} clusters, {keys:.0f} keys"
        )
        assert reconciles > 50 * len(env.created_clusters)
        assert keys == len(env.created_clusters)


def test_deleting_clusters_removes_machines_finalizer_and_tracker_entry(
    steady: Env, life: Env
) -> None:
    clusters = [(steady, HA, HA_KCP), (steady, SINGLE, SINGLE_KCP), (life, HA, HA_KCP)]
    cluster_keys = [
        (env, ClusterKey.from_object(env.kube.get(groups.CLUSTER, env.namespace, name) or {}))
        for env, name, _ in clusters
    ]
    for env, name, kcp_name in clusters:
        env.kube.delete(groups.KUBEADM_CONTROL_PLANE, env.namespace, kcp_name)
        env.kube.delete(groups.CLUSTER, env.namespace, name)
    started = time.monotonic()
    _wait(
        "every control-plane Machine to be gone",
        lambda: not any(_machines(env, name) for env, name, _ in clusters),
        240,
        2.0,
    )
    _wait(
        "the KubeadmControlPlanes to be gone (finalizer removed)",
        lambda: all(_kcp(env, kcp_name) is None for env, _, kcp_name in clusters),
        60,
    )
    _wait(
        "the trackers to forget every cluster",
        lambda: not any(key in set(env.tracker.clusters()) for env, key in cluster_keys),
        30,
        0.2,
    )
    print(f"deleted in {time.monotonic() - started:.0f}s")
    for env in (steady, life):
        assert not [p for p in env.sim.pids() if p.startswith(f"{env.namespace}/")]
