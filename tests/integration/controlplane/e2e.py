"""What the end-to-end modules share: a fleet (a namespace with its own simulator, Cluster API
core and CABPK, tracker and kcp controller, so its own metrics), bounded waits, and
readers of the clusters' state through the management and workload API servers.

`test_controlplane.py` holds the steady fleet (both samples, watched) and
`test_lifecycle.py` the life fleet (a copy of the HA sample that scales, upgrades,
loses Machines and is remediated); as two modules they run on two pytest-xdist
workers side by side.
"""

from __future__ import annotations

import contextlib
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
from kcp.controlplane.controller import ControlPlaneController, setup
from kcp.controlplane.reconciler import ReconcilerOptions
from kcp.etcd import EtcdClient, EtcdClusterStatus, EtcdTimeouts, cluster_status, move_leader
from kcp.rest import Kube
from kcp.runtime.manager import Manager
from kcp.runtime.metrics import new_registry
from kcp.runtime.options import WATCH_FILTER_LABEL, ManagerOptions
from kcp.sim import options as sim_options
from kcp.sim import simulator as sim_module
from kcp.testing.controlplane import LocalControlPlane
from kcp.tracker.identity import ClusterKey
from kcp.tracker.options import TrackerOptions
from kcp.tracker.tracker import Tracker

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
    watch_filter: str | None = None
    """The fleet's kcp reconciles only what carries this `--watch-filter` label (None: all)."""


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


@dataclass
class KcpInstance:
    """One kcp controller (manager, tracker, metrics) running in the test process."""

    tracker: Tracker
    controller: ControlPlaneController
    registry: Any


@contextlib.contextmanager
def _run_kcp(
    control_plane: LocalControlPlane, namespace: str, *, watch_filter: str | None = None
) -> Iterator[KcpInstance]:
    """kcp on `namespace` (and on `--watch-filter` objects only, if given), stopped after."""
    api = control_plane.api_client()
    registry = new_registry(process_collectors=False)
    manager = Manager(
        ManagerOptions(
            health_addr="0",
            metrics_bind_addr="0",
            namespace=namespace,
            watch_filter=watch_filter,
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
        yield KcpInstance(tracker, controller, registry)
    finally:
        manager.stop(timeout=10)
        tracker.close()


@contextlib.contextmanager
def _fleet(
    control_plane: LocalControlPlane,
    role: str,
    *,
    watch_filter: str | None = None,
    **sim_settings: Any,
) -> Iterator[Env]:
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
    try:
        with _run_kcp(control_plane, namespace, watch_filter=watch_filter) as kcp:
            yield Env(
                namespace,
                admin,
                sim,
                kcp.tracker,
                kcp.controller,
                kcp.registry,
                watch_filter=watch_filter,
            )
    finally:
        sim.stop()
        with contextlib.suppress(Exception):  # the test control plane goes away anyway
            admin.delete(groups.NAMESPACE, None, namespace)


# -- helpers ------------------------------------------------------------------------------


def _sample(filename: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((SAMPLES / filename).read_text()) if d]


def _apply(env: Env, documents: list[dict[str, Any]], watch_filter: str | None) -> None:
    """Create `documents` in the fleet's namespace, each labelled for `watch_filter` if set."""
    for document in documents:
        metadata = document["metadata"]
        metadata["namespace"] = env.namespace
        if watch_filter:
            metadata.setdefault("labels", {})[WATCH_FILTER_LABEL] = watch_filter
        group, _, _version = str(document["apiVersion"]).rpartition("/")
        resource = env.kube.resource_for(group, document["kind"])
        env.kube.create(resource, env.namespace, document)


def _apply_sample(env: Env, filename: str) -> None:
    documents = _sample(filename)
    _apply(env, documents, env.watch_filter)
    env.created_clusters.update(d["metadata"]["name"] for d in documents if d["kind"] == "Cluster")


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


def _etcd_status(env: Env, cluster: str) -> EtcdClusterStatus | None:
    sim_cluster = env.sim.cluster(env.namespace, cluster)
    if sim_cluster is None or sim_cluster.etcd_tls is None:
        return None
    endpoints = sim_cluster.etcd_endpoints()
    if not endpoints:
        return None
    return cluster_status(
        endpoints,
        tls=sim_cluster.etcd_tls,
        timeouts=EtcdTimeouts(dial=3.0, call=3.0),
        transport="grpc",
    )


def _etcd_members(env: Env, cluster: str) -> list[str]:
    status = _etcd_status(env, cluster)
    return sorted(m.name for m in status.members) if status else []


def _etcd_leader_node(env: Env, cluster: str) -> str | None:
    """The Node whose etcd member leads now (members are named after their Node)."""
    status = _etcd_status(env, cluster)
    if status is None or status.leader_id is None:
        return None
    return next((m.name for m in status.members if m.id == status.leader_id), None)


def _spare_the_leader(env: Env, cluster: str, node: str) -> None:
    """Before a test kills `node`'s etcd, hand leadership to another member if it leads.

    A dead leader means an election: a moment in which no member sees a leader, which a
    QuorumWatch rightly counts. The fault a test injects should not be that moment."""
    status = _etcd_status(env, cluster)
    assert status is not None, f"no etcd member of {cluster} runs"
    by_name = {m.name: m.id for m in status.members if not m.is_learner}
    if status.leader_id is None or status.leader_id != by_name.get(node):
        return
    target = next(i for name, i in by_name.items() if name != node)
    sim_cluster = env.sim.cluster(env.namespace, cluster)
    timeouts = EtcdTimeouts(dial=3.0, call=5.0)
    clients = [
        EtcdClient.open(e, sim_cluster.etcd_tls, timeouts=timeouts, transport="grpc")
        for e in sim_cluster.etcd_endpoints()
    ]
    try:
        move_leader(clients, target)
    finally:
        for client in clients:
            client.close()
    _wait(f"etcd leadership to leave {node}", lambda: _etcd_leader_node(env, cluster) != node, 30)


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
                endpoints,
                tls=sim_cluster.etcd_tls,
                timeouts=EtcdTimeouts(dial=2.0, call=2.0),
                transport="grpc",
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
            transport="grpc",
        )
        listed = {m.id for m in fresh.members if not m.is_learner}
        return not listed or bool(silent & listed)


STABLE_WINDOW = 120.0
"""Seconds a settled cluster is watched for Machines coming or going."""
TUNNEL_WINDOW = 200.0
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


UPGRADED_DNS = {"clusterConfiguration": {"dns": {"imageTag": "v1.12.2"}}}


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


def _refuse_version(env: Env, cluster: str, name: str, runs: str, refused: str) -> dict[str, Any]:
    """Ask for `refused` on a control plane that runs `runs`: RollingOut must say InvalidSpec
    naming the allowed versions while no Machine is made; then `runs` again, and the
    condition settles. Returns the refusal's condition."""
    machines = sorted(m["metadata"]["name"] for m in _machines(env, cluster))

    def patch_version(version: str) -> None:
        env.kube.merge_patch(
            groups.KUBEADM_CONTROL_PLANE, env.namespace, name, {"spec": {"version": version}}
        )

    def named() -> Any:
        found = _condition(_kcp(env, name), c.ROLLING_OUT)
        ok = found.get("reason") == "InvalidSpec" and "allowed versions" in found.get("message", "")
        return found if ok else False

    patch_version(refused)
    try:
        found: dict[str, Any] = _wait("RollingOut to name the allowed versions", named, 30, 0.5)
        time.sleep(3)  # more reconciles: still nothing rolls out
        assert sorted(m["metadata"]["name"] for m in _machines(env, cluster)) == machines
    finally:
        patch_version(runs)
    _wait(
        "the control plane to settle back with nothing to roll out",
        lambda: _condition(_kcp(env, name), c.ROLLING_OUT).get("status") == c.FALSE,
        30,
    )
    return found


def _assert_one_key_per_cluster(env: Env) -> None:
    """The fleet's tracker made one etcd client key per cluster over all its reconciles."""
    tracked = {key.name for key in env.tracker.clusters()}
    assert tracked == env.created_clusters
    keys = _metric(env, "kcp_tracker_keys_generated_total", algorithm="rsa-2048")
    reconciles = _reconciles(env, "success", "requeue_after", "requeue", "error")
    print(f"{reconciles:.0f} reconciles of {len(env.created_clusters)} clusters, {keys:.0f} keys")
    assert reconciles > 50 * len(env.created_clusters)
    assert keys == len(env.created_clusters)


def _delete_clusters(env: Env, clusters: list[tuple[str, str]]) -> None:
    """Delete each (Cluster, KubeadmControlPlane): Machines, the KCPs (their finalizer
    removed) and the tracker's entries go, and no simulated process is left."""
    keys = {
        ClusterKey.from_object(env.kube.get(groups.CLUSTER, env.namespace, name) or {})
        for name, _ in clusters
    }
    for name, kcp_name in clusters:
        env.kube.delete(groups.KUBEADM_CONTROL_PLANE, env.namespace, kcp_name)
        env.kube.delete(groups.CLUSTER, env.namespace, name)
    started = time.monotonic()
    _wait(
        "every control-plane Machine to be gone",
        lambda: not any(_machines(env, name) for name, _ in clusters),
        240,
        2.0,
    )
    _wait(
        "the KubeadmControlPlanes to be gone (finalizer removed)",
        lambda: all(_kcp(env, kcp_name) is None for _, kcp_name in clusters),
        60,
    )
    _wait(
        "the tracker to forget every cluster",
        lambda: not keys & set(env.tracker.clusters()),
        30,
        0.2,
    )
    print(f"deleted in {time.monotonic() - started:.0f}s")
    assert not [p for p in env.sim.pids() if p.startswith(f"{env.namespace}/")]
