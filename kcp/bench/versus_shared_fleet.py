"""One contender of `kcp bench versus` on the cheap shared fleet, and how it is measured.

A `SharedFleet` is what `kcp bench scale` runs kcp on (`kcp.bench.fleet`): N
clusters in a namespace of their own, every cluster's etcd one real etcd
(`SharedEtcd` on the standard port), every workload API server the management
API server (`SteadyWorkload`: one Node, its four static Pods, `kubeadm-config`),
port-forwards served by the Node's kubelet (`SharedKubelet`). No Cluster API
core or infrastructure provider runs: the fleet writes what they would (Cluster
provisioned with an endpoint, Machines with a Node, a provider ID and their
`Ready`/`Available` conditions; a LocalMachineTemplate per cluster), so that a
control plane is Available and up to date for either KCP and a reconcile has
nothing to do but inspect etcd and the Pods and report.

The clusters' kubeconfig authenticates as `kcp-bench-<contender>-workload`, so
the management API server's audit log counts a controller's requests to its
management API (`kcp-bench-<contender>`) and to its "workload API servers" apart;
port-forwards are that workload user's `pods/portforward` requests.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from kcp.bench import procstat
from kcp.bench.environment import BenchEnvironment
from kcp.bench.progress import Progress
from kcp.bench.versus_counts import AuditCounter
from kcp.bench.versus_fleet import (
    Contender,
    ControllerReadings,
    RunningContender,
    start_contender,
)

__all__ = [
    "PORT_FORWARD",
    "MachineChangeWatch",
    "SharedFleet",
    "SharedWindow",
    "split_port_forwards",
    "workload_user",
]

PORT_FORWARD = "pods/portforward"


def workload_user(contender: Contender) -> str:
    """The user the contender's clusters' kubeconfig Secret authenticates as."""
    return f"{contender.user}-workload"


def split_port_forwards(by_kind: dict[str, int]) -> tuple[int, int]:
    """(port-forwards, other requests) among a workload user's requests by kind."""
    forwards = sum(n for kind, n in by_kind.items() if PORT_FORWARD in kind)
    return forwards, sum(by_kind.values()) - forwards


class SharedFleet(ControllerReadings):
    """The fleet and (once `start_controller()` is called) the contender's controller; a
    context manager that stops the controller and deletes everything on the way out."""

    def __init__(
        self,
        env: BenchEnvironment,
        contender: Contender,
        size: int,
        progress: Progress,
        *,
        delete_objects: bool = True,
    ) -> None:
        """`delete_objects` False leaves the fleet's objects for the management cluster's
        own teardown (the last fleet of a run: a thousand clusters take a minute to delete)."""
        self.delete_objects = delete_objects
        self.env = env
        self.contender = contender
        self.size = size
        self.progress = progress
        self.namespace = env.unique(f"shared-{contender.name}")
        self.work_dir = env.work_dir / "versus-shared" / f"{contender.name}-{size}"
        self.controller: RunningContender | None = None
        self.fleet: Any = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> SharedFleet:
        from kcp.bench.fleet import Fleet, SharedEtcd
        from kcp.bench.kubelet import SharedKubelet
        from kcp.bench.workload import SteadyWorkload

        try:
            etcd = self._stack.enter_context(SharedEtcd(standard_port=True))
            self._stack.enter_context(SharedKubelet.for_environment(self.env, etcd))
            workload = SteadyWorkload.for_environment(
                self.env, etcd, user=workload_user(self.contender)
            )
            if self.delete_objects:
                self._stack.callback(workload.remove)
            workload.prepare(etcd.ca)
            self.fleet = Fleet(
                self.env.api_client(), self.namespace, etcd.ca, etcd.endpoints, workload=workload
            )
            self.fleet.create_namespace()
            if self.delete_objects:
                self._stack.callback(self.fleet.delete_namespace)
            self._stack.callback(self.stop_controller)
            self.fleet.grow(self.size, self.progress)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.step(f"versus shared: tearing down {self.namespace}")
        self._stack.close()

    def start_controller(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.controller = start_contender(self.env, self.contender, self.namespace, self.work_dir)

    def stop_controller(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def log_path(self) -> Path | None:
        return self.controller.log_path if self.controller is not None else None


class SharedWindow:
    """What the contender did between construction and `close()`, measured from outside:
    CPU from `/proc`, reconciles from its metrics, requests from the audit log by user.
    Opened before the controller starts, it counts all the process did since."""

    def __init__(self, fleet: SharedFleet, audit: AuditCounter) -> None:
        self.fleet = fleet
        self.audit = audit
        self.users = (fleet.contender.user, workload_user(fleet.contender))
        self.started = time.monotonic()
        running = fleet.controller is not None
        self.apiserver_cpu = _apiserver_cpu(fleet.env)
        self.cpu = procstat.cpu_seconds(fleet.pid) if running else 0.0
        self.reconciles = fleet.reconciles() if running else 0.0
        self.requests = {user: audit.of(user) for user in self.users}

    def close(self) -> dict[str, Any]:
        from kcp.bench.versus_phases import kind_difference

        wall = time.monotonic() - self.started
        cpu = procstat.cpu_seconds(self.fleet.pid) - self.cpu
        apiserver_cpu = _apiserver_cpu(self.fleet.env) - self.apiserver_cpu
        reconciles = self.fleet.reconciles() - self.reconciles
        management, workload = (
            kind_difference(self.audit.of(user)[1], self.requests[user][1]) for user in self.users
        )
        forwards, others = split_port_forwards(workload)
        minutes = wall / 60.0
        requests = sum(management.values())
        return {
            "window_seconds": round(wall, 1),
            "cpu_cores": round(cpu / wall, 3),
            # The one API server serves this contender's management and workload requests
            # alone (one contender at a time): what they cost it.
            "apiserver_cpu_cores": round(apiserver_cpu / wall, 3),
            "reconciles": int(reconciles),
            "cpu_ms_per_reconcile": round(1000 * cpu / reconciles, 2) if reconciles >= 1 else None,
            "requests": requests,
            "requests_per_minute": round(requests / minutes, 1),
            "requests_by_kind": management,
            # Port-forwards included, as the 10-cluster fleet's workload audit logs count them.
            "workload_requests_per_minute": round((forwards + others) / minutes, 1),
            "port_forwards_per_minute": round(forwards / minutes, 1),
            "workload_requests_by_kind": workload,
        }


def _apiserver_cpu(env: BenchEnvironment) -> float:
    """CPU seconds of the management kube-apiserver so far (0 if it is not known)."""
    pid = env.plane.apiserver_pid
    return procstat.cpu_seconds(pid) if pid else 0.0


class MachineChangeWatch:
    """When each cluster's Machine first carried a change (the annotation both KCPs copy
    from the machine template in place): a metadata-only watch of the Machines, so a
    thousand of them cost no polling."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        import threading

        from kcp.api import groups
        from kcp.runtime import Informer

        self.informer = Informer(
            api_client, groups.MACHINE, namespace=namespace, metadata_only=True
        )
        self.token = ""
        self.seen: dict[str, float] = {}
        self._changed = threading.Condition()
        self.informer.add_handler(self._handle)

    def _handle(self, event_type: str, obj: dict[str, Any], old: Any) -> None:
        from kcp.api.labels import CLUSTER_NAME_LABEL
        from kcp.bench.fleet import BUMP_ANNOTATION

        now = time.monotonic()
        metadata = obj.get("metadata") or {}
        cluster = str((metadata.get("labels") or {}).get(CLUSTER_NAME_LABEL) or "")
        with self._changed:
            token = (metadata.get("annotations") or {}).get(BUMP_ANNOTATION)
            if event_type != "DELETED" and self.token and token == self.token:
                self.seen.setdefault(cluster, now)
                self._changed.notify_all()

    def __enter__(self) -> MachineChangeWatch:
        self.informer.start()
        if not self.informer.wait_for_sync(120.0):
            raise TimeoutError("the benchmark's own Machine watch did not sync")
        return self

    def __exit__(self, *exc: object) -> None:
        self.informer.stop()

    def expect(self, token: str) -> None:
        with self._changed:
            self.token, self.seen = token, {}

    def wait(self, size: int, timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.seen) < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"the change reached the Machines of {len(self.seen)} of {size} "
                        f"clusters in {timeout:.0f}s"
                    )
                self._changed.wait(min(remaining, 0.5))
            return dict(self.seen)
