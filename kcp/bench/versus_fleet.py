"""One contender of `kcp bench versus` and the fleet of real simulated machines it reconciles.

A `RealFleet` is a namespace of its own on the shared management cluster with
its own simulator (`kcp.sim`: every Machine a real etcd member and
kube-apiserver on loopback, with Cluster API's core and CABPK scoped to the
namespace), and one KubeadmControlPlane controller scoped to it: `kcp run` or
Cluster API's `kubeadm-control-plane-manager`. The controller authenticates as
a user of its own (`kcp-bench-<contender>`), so the API server's audit log
counts its requests apart from everyone else's. Two contenders never share a
namespace: both reconcile the same kind.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcp.api import conditions as cond
from kcp.api import groups
from kcp.api.labels import CLUSTER_NAME_LABEL
from kcp.bench.environment import BenchEnvironment, child_env
from kcp.bench.versus_counts import (
    WORKLOAD_AUDIT_POLICY,
    PortForwardCounter,
    WorkloadAuditCounter,
    metric_value,
)
from kcp.rest import Resource
from kcp.testing.processes import ManagedProcess, free_port, wait_until

__all__ = [
    "CONTENDERS",
    "ClusterShape",
    "Contender",
    "ControllerReadings",
    "QuorumWatch",
    "RealFleet",
    "RunningContender",
    "start_contender",
]

HOST = "127.0.0.1"
VERSION = "v1.34.4"
KCP_CONTROLLER = "kubeadmcontrolplane"
"""The `controller` label of both controllers' KubeadmControlPlane reconciles."""


MACHINE_GO_ENV = {"GOGC": "400", "GOMEMLIMIT": "512MiB", "GOMAXPROCS": "1"}
"""The machines' etcd members and API servers collect garbage a quarter as often (the heap
may grow to five times what is live, never past 512 MiB) and run on one core each (two
dozen of them share 2 cores, where parallel collection only adds coordination): 20 API
servers starting at once were most of the CPU that settle waited for. What they serve is
the same."""


@dataclass(frozen=True)
class Contender:
    """A controller under comparison, at the flags it is started with."""

    name: str
    program: str
    """"kcp" (`kcp run`) or "capi" (Cluster API's kubeadm-control-plane-manager)."""
    args: tuple[str, ...] = ()
    """Flags beyond the ones every run needs (kubeconfig, namespace, endpoints)."""
    description: str = ""

    @property
    def user(self) -> str:
        return f"kcp-bench-{self.name}"


CONTENDERS: dict[str, Contender] = {
    "kcp": Contender("kcp", "kcp", description="kcp run, default flags"),
    "kcp-10m": Contender(
        "kcp-10m",
        "kcp",
        ("--health-requeue-duration=10m",),
        "kcp run, a healthy control plane inspected every 10 minutes (Cluster API's KCP "
        "resyncs every 10 minutes)",
    ),
    "kcp-60s": Contender(
        "kcp-60s",
        "kcp",
        ("--health-requeue-duration=60s",),
        "kcp run, a healthy control plane inspected every minute (kcp's default before "
        "health changes woke it)",
    ),
    "kcp-10w": Contender(
        "kcp-10w",
        "kcp",
        ("--kubeadmcontrolplane-concurrency=10",),
        "kcp run, at most 10 reconciles at once (kcp's default before it followed Cluster "
        "API's KCP to 100)",
    ),
    "capi": Contender("capi", "capi", description="Cluster API v1.13.6 KCP, default flags"),
    "capi-tuned": Contender(
        "capi-tuned",
        "capi",
        (
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--clustercache-client-qps=100",
            "--clustercache-client-burst=200",
        ),
        "Cluster API KCP, client QPS/burst raised as for scale runs",
    ),
}


@dataclass(frozen=True)
class ClusterShape:
    name: str
    replicas: int


_KUBEADM_CONFIG_SPEC: dict[str, Any] = {
    "clusterConfiguration": {"apiServer": {"certSANs": ["localhost", "127.0.0.1"]}},
    "initConfiguration": {
        "nodeRegistration": {
            "kubeletExtraArgs": [
                {"name": "eviction-hard", "value": "nodefs.available<0%,imagefs.available<0%"}
            ]
        }
    },
}
_KUBEADM_CONFIG_SPEC["joinConfiguration"] = copy.deepcopy(_KUBEADM_CONFIG_SPEC["initConfiguration"])


def cluster_objects(shape: ClusterShape) -> list[tuple[Resource, dict[str, Any]]]:
    """Cluster, LocalCluster, LocalMachineTemplate and KubeadmControlPlane, as users write."""
    name = shape.name
    infra = groups.INFRASTRUCTURE_GROUP
    return [
        (
            groups.CLUSTER,
            {
                "metadata": {"name": name},
                "spec": {
                    "clusterNetwork": {
                        "pods": {"cidrBlocks": ["192.168.0.0/16"]},
                        "services": {"cidrBlocks": ["10.128.0.0/12"]},
                        "serviceDomain": "cluster.local",
                    },
                    "infrastructureRef": {"apiGroup": infra, "kind": "LocalCluster", "name": name},
                    "controlPlaneRef": {
                        "apiGroup": groups.CONTROLPLANE_GROUP,
                        "kind": "KubeadmControlPlane",
                        "name": name,
                    },
                },
            },
        ),
        (groups.LOCAL_CLUSTER, {"metadata": {"name": name}, "spec": {}}),
        (
            groups.LOCAL_MACHINE_TEMPLATE,
            {"metadata": {"name": name}, "spec": {"template": {"spec": {}}}},
        ),
        (
            groups.KUBEADM_CONTROL_PLANE,
            {
                "metadata": {"name": name},
                "spec": {
                    "replicas": shape.replicas,
                    "version": VERSION,
                    "machineTemplate": {
                        "spec": {
                            "infrastructureRef": {
                                "apiGroup": infra,
                                "kind": "LocalMachineTemplate",
                                "name": name,
                            }
                        }
                    },
                    "kubeadmConfigSpec": copy.deepcopy(_KUBEADM_CONFIG_SPEC),
                    # What Cluster API's defaulting webhook writes (none runs here); its
                    # controller rolls nothing out without it.
                    "rollout": {
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
                    },
                },
            },
        ),
    ]


def is_available(kcp: dict[str, Any]) -> bool:
    """Available=True with every desired replica ready and up to date."""
    spec, status = kcp.get("spec") or {}, kcp.get("status") or {}
    want = spec.get("replicas")
    available = cond.get_condition(kcp, cond.AVAILABLE) or {}
    return (
        available.get("status") == cond.TRUE
        and status.get("readyReplicas") == want
        and status.get("upToDateReplicas") == want
        and status.get("replicas") == want
    )


def not_available_reason(kcp: dict[str, Any]) -> str:
    """Replicas and the conditions that say why a control plane is not (yet) where wanted."""
    status = kcp.get("status") or {}
    available = cond.get_condition(kcp, cond.AVAILABLE) or {}
    parts = [
        f"{kcp['metadata']['name']}: Available={available.get('status')} "
        f"({available.get('reason')}: {str(available.get('message') or '')[:160]}), "
        f"replicas {status.get('replicas')}/{(kcp.get('spec') or {}).get('replicas')} "
        f"ready {status.get('readyReplicas')} upToDate {status.get('upToDateReplicas')}"
    ]
    for kind in (cond.ROLLING_OUT, cond.SCALING_UP, cond.SCALING_DOWN):
        found = cond.get_condition(kcp, kind) or {}
        if found.get("status") == cond.TRUE:
            parts.append(f"{kind}: {str(found.get('message') or '')[:200]}")
    return "; ".join(parts)


@dataclass
class RunningContender:
    """A started controller: its process id, metrics URL, how to stop it and its log."""

    pid: int
    metrics_url: str
    stop: Callable[[], None]
    log_path: Path
    profiler_url: str | None = None
    """`http://host:port` of its `--profiler-address` endpoint (`/debug/pprof/...`), if on."""


def start_contender(
    env: BenchEnvironment,
    contender: Contender,
    namespace: str,
    work_dir: Path,
    *,
    profiler: bool = False,
) -> RunningContender:
    """`contender`'s controller scoped to `namespace`, authenticating as `contender.user`,
    logging under `work_dir`, with its profiler endpoint on if `profiler`; ready when
    returned (the caller stops it)."""
    kubeconfig, _ = env.plane.kubeconfig_for(contender.user)
    profiler_address = f"{HOST}:{free_port(HOST)}" if profiler else None
    if contender.program == "kcp":
        started = _start_kcp(kubeconfig, contender, namespace, work_dir, profiler_address)
    else:
        started = _start_capi(kubeconfig, contender, namespace, work_dir, profiler_address)
    if profiler_address is not None:
        started.profiler_url = f"http://{profiler_address}"
    return started


def _profiler_flags(address: str | None) -> list[str]:
    """The flag both programs share (kcp's py-spy endpoint; Cluster API's Go pprof)."""
    return [] if address is None else [f"--profiler-address={address}"]


def _start_kcp(
    kubeconfig: Path,
    contender: Contender,
    namespace: str,
    work_dir: Path,
    profiler_address: str | None,
) -> RunningContender:
    health, metrics = free_port(HOST), free_port(HOST)
    log_path = work_dir / "kcp-run.log"
    process = ManagedProcess(
        f"kcp-run-{contender.name}",
        [
            sys.executable,
            "-m",
            "kcp",
            "run",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            f"--health-addr={HOST}:{health}",
            f"--metrics-bind-addr={HOST}:{metrics}",
            *_profiler_flags(profiler_address),
            *contender.args,
        ],
        log_path=log_path,
        env=child_env(),
    )
    process.start()

    def ready() -> bool:
        url = f"http://{HOST}:{health}/readyz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    try:
        wait_until(ready, timeout=60, what="kcp run /readyz", process=process)
    except BaseException:
        process.stop()
        raise
    assert process.pid is not None
    return RunningContender(
        process.pid,
        f"http://{HOST}:{metrics}/metrics",
        lambda: process.stop(timeout=35),
        log_path,
    )


def _start_capi(
    kubeconfig: Path,
    contender: Contender,
    namespace: str,
    work_dir: Path,
    profiler_address: str | None,
) -> RunningContender:
    from kcp.testing.capi import KUBEADM_CONTROL_PLANE, CapiOptions, ClusterAPIProcesses

    processes = ClusterAPIProcesses(
        kubeconfig,
        CapiOptions(
            controllers=(KUBEADM_CONTROL_PLANE,),
            namespace=namespace,
            work_dir=work_dir / "capi",
            verbosity=0,
            extra_args={
                KUBEADM_CONTROL_PLANE: [*_profiler_flags(profiler_address), *contender.args]
            },
        ),
    )
    processes.start()
    return RunningContender(
        processes.pids()[KUBEADM_CONTROL_PLANE],
        processes.metrics_url(KUBEADM_CONTROL_PLANE),
        processes.stop,
        processes.log_paths()[KUBEADM_CONTROL_PLANE],
    )


class ControllerReadings:
    """What a fleet reads of its started contender's controller from outside: the process
    (for `/proc`) and its metrics endpoint."""

    contender: Contender
    controller: RunningContender | None

    @property
    def pid(self) -> int:
        assert self.controller is not None
        return self.controller.pid

    def metrics_text(self) -> str:
        assert self.controller is not None
        with urllib.request.urlopen(self.controller.metrics_url, timeout=10) as response:  # noqa: S310
            return str(response.read().decode())

    def reconciles(self) -> float:
        """KubeadmControlPlane reconciles so far (`controller_runtime_reconcile_total`)."""
        return metric_value(
            self.metrics_text(), "controller_runtime_reconcile_total", controller=KCP_CONTROLLER
        )

    def goroutines(self) -> int | None:
        """`go_goroutines` for a Go controller; None for kcp."""
        if self.contender.program != "capi":
            return None
        return int(metric_value(self.metrics_text(), "go_goroutines"))


class RealFleet(ControllerReadings):
    """The contender's controller and simulator in a fresh namespace; `stop()` ends both."""

    def __init__(
        self,
        env: BenchEnvironment,
        contender: Contender,
        *,
        machine_concurrency: int = 3,
        profiler: bool = False,
    ) -> None:
        from kcp.rest import Kube

        self.env = env
        self.contender = contender
        self.namespace = env.unique(f"versus-{contender.name}")
        self.work_dir = env.work_dir / "versus" / contender.name
        self.kube = Kube(env.api_client(), field_manager="kcp-bench")
        self.sim: Any = None
        self.controller: RunningContender | None = None
        self.port_forwards = PortForwardCounter(self.kubelet_logs)
        self.workload_requests = WorkloadAuditCounter(self.workload_audit_logs)
        self.machine_concurrency = machine_concurrency
        self.profiler = profiler

    def start(self) -> None:
        from kcp.sim import options as sim_options
        from kcp.sim import simulator as sim_module

        self.work_dir.mkdir(parents=True, exist_ok=True)
        policy = self.work_dir / "workload-audit-policy.yaml"
        policy.write_text(WORKLOAD_AUDIT_POLICY)
        self.kube.create(groups.NAMESPACE, None, {"metadata": {"name": self.namespace}})
        self.sim = sim_module.Simulator(
            self.env.api_client(),
            sim_options.SimOptions(
                namespace=self.namespace,
                kubeconfig=self.env.kubeconfig,
                work_dir=self.work_dir / "sim",
                machine_concurrency=self.machine_concurrency,
                apiserver_audit_policy=policy,
                process_env=dict(MACHINE_GO_ENV),
            ),
        )
        self.sim.start()
        self.controller = start_contender(
            self.env, self.contender, self.namespace, self.work_dir, profiler=self.profiler
        )

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    # -- reading ----------------------------------------------------------------------

    def control_planes(self) -> dict[str, dict[str, Any]]:
        return {
            str(o["metadata"]["name"]): o
            for o in self.kube.list(groups.KUBEADM_CONTROL_PLANE, self.namespace)
        }

    def machines(self) -> list[dict[str, Any]]:
        return list(self.kube.list(groups.MACHINE, self.namespace))

    def machines_of(self, cluster: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.machines()
            if (m["metadata"].get("labels") or {}).get(CLUSTER_NAME_LABEL) == cluster
        ]

    def snapshot(self, label: str) -> None:
        """Write the Machines and control planes as they are now (without managed fields) to
        `snapshots/<label>.json` in the work directory, kept with the logs: their conditions'
        transition times say where a phase spent its time."""
        import json

        def slim(obj: dict[str, Any]) -> dict[str, Any]:
            metadata = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
            return {**obj, "metadata": metadata}

        with contextlib.suppress(Exception):
            found = {
                "machines": [slim(m) for m in self.machines()],
                # With their managed fields: who writes what of them.
                "control_planes": list(self.control_planes().values()),
            }
            path = self.work_dir / "snapshots" / f"{label}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(found, indent=1))

    def kubelet_logs(self) -> list[Path]:
        return [m.dir / "logs" / "kubelet.log" for m in self._sim_machines()]

    def workload_audit_logs(self) -> list[Path]:
        return [m.audit_log for m in self._sim_machines()]

    def _sim_machines(self) -> list[Any]:
        if self.sim is None:
            return []
        found: list[Any] = []
        with contextlib.suppress(Exception):
            for sim_cluster in self.sim.clusters():
                found.extend(list(sim_cluster.machines.values()))
        return found

    # -- writing ----------------------------------------------------------------------

    def create(self, shapes: list[ClusterShape]) -> None:
        for shape in shapes:
            for resource, obj in cluster_objects(shape):
                body = {
                    "apiVersion": resource.api_version,
                    "kind": resource.kind,
                    **obj,
                }
                self.kube.create(resource, self.namespace, body)

    def patch_control_plane(self, name: str, patch: dict[str, Any]) -> int:
        """Merge-patch a KubeadmControlPlane; its new `metadata.generation`."""
        patched = self.kube.merge_patch(groups.KUBEADM_CONTROL_PLANE, self.namespace, name, patch)
        return int((patched.get("metadata") or {}).get("generation") or 0)


@dataclass
class QuorumWatch:
    """Samples every cluster's etcd quorum (and polls the port-forward and workload request
    counters) every 3 s."""

    fleet: RealFleet
    interval: float = 3.0
    samples: int = 0
    lost: list[str] = field(default_factory=list)
    """`<seconds since start> <cluster> healthy/members` of samples without quorum."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> QuorumWatch:
        self._thread = threading.Thread(target=self._run, name="versus-quorum", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def snapshot(self) -> tuple[int, int]:
        """(samples, samples without quorum) so far."""
        with self._lock:
            return self.samples, len(self.lost)

    def _run(self) -> None:
        from kcp.sim.dashboard import etcd_members

        while not self._stop.wait(self.interval):
            self.fleet.port_forwards.poll()
            self.fleet.workload_requests.poll()
            sim = self.fleet.sim
            if sim is None:
                continue
            with contextlib.suppress(Exception):
                for sim_cluster in sim.clusters():
                    members = etcd_members(sim_cluster)
                    if not members:
                        continue
                    healthy = sum(1 for m in members if m.healthy)
                    with self._lock:
                        self.samples += 1
                        if 2 * healthy <= len(members):
                            self.lost.append(
                                f"{time.monotonic() - self._started:.0f}s {sim_cluster.name} "
                                f"{healthy}/{len(members)}"
                            )
