"""The simulator: an infrastructure provider whose machines are real local processes.

    with Simulator(api_client, SimOptions(kubeconfig=path)) as sim:
        ...create a Cluster, its LocalCluster, a KubeadmControlPlane...
        machine = sim.wait_for_machine("ns", "m1")
        sim.inject("ns", "m1", Component.ETCD, Fault.KILLED)
        sim.restore("ns", "m1", Component.ETCD)

It reconciles LocalClusters and LocalMachines only, as a real provider does.
Cluster API's own core and kubeadm bootstrap controllers (the pinned module's
binaries) do the rest; given the management cluster's kubeconfig, the
simulator runs them beside itself, scoped to its namespace, and stops them
with everything else. `stop()` (or leaving the block, or the interpreter
exiting) stops every process the run started and removes its directory;
addresses go back to the shared pool. Controllers use `kcp.runtime`: one
informer per kind, one work queue per controller, so a machine being
provisioned never blocks another cluster's reconciles.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from kcp.api.objects import dig
from kcp.runtime import Controller, ObjectKey, Result, get_logger, new_registry
from kcp.runtime.handlers import EventHandler, enqueue_self, map_to
from kcp.runtime.informer import Informer
from kcp.runtime.metrics import RuntimeMetrics
from kcp.sim.addresses import LoopbackAddresses
from kcp.sim.clients import management_client
from kcp.sim.cluster import SimCluster, SimContext
from kcp.sim.faults import Component, Fault
from kcp.sim.infrastructure import (
    LocalClusterReconciler,
    LocalMachineReconciler,
    set_load_balancer_fault,
)
from kcp.sim.launcher import Launcher
from kcp.sim.machine import SimMachine
from kcp.sim.objects import meta
from kcp.sim.options import SimOptions
from kcp.sim.state import Caches, SimState
from kcp.testing import binaries
from kcp.testing.capi import CapiOptions, ClusterAPIProcesses

__all__ = ["SimError", "Simulator"]

_log = get_logger("kcp.sim")
_RESYNC = 30.0
_SYNC_TIMEOUT = 30.0
_TEARDOWN_THREADS = 8


class SimError(RuntimeError):
    """The simulator cannot do what was asked (unknown machine, not started, timed out)."""


Key = tuple[str, str]


class Simulator:
    """The local infrastructure provider against one management cluster."""

    def __init__(self, api_client: Any, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self.api_client = api_client
        self._own_dir = self.options.work_dir is None
        self.work_dir = self.options.work_dir or Path(tempfile.gettempdir()) / (
            f"kcp-sim-{uuid.uuid4().hex[:12]}"
        )
        """Created by `start()`; removed by `stop()` unless given in the options or kept."""
        self._launcher: Launcher | None = None
        self._state: SimState | None = None
        self._controllers: dict[str, Controller] = {}
        self.cluster_api: ClusterAPIProcesses | None = None
        """Cluster API's core and kubeadm bootstrap processes, when `options.kubeconfig` is set."""
        self._started = False
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start watching and reconciling; returns once the caches are synced."""
        with self._lock:
            if self._started:
                return
            self._started = True
        # Before the processes' own exit hook (atexit runs last-registered first):
        # an orderly stop also removes the run directory and releases addresses.
        atexit.register(_stop_at_exit, weakref.ref(self))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=not self._own_dir, mode=0o700)
        self._launcher = Launcher()
        ctx = SimContext(
            options=self.options,
            launcher=self._launcher,
            addresses=LoopbackAddresses(self.options.address_lock_dir),
            binaries=binaries.ensure(),
            run_dir=self.work_dir,
            kubelet_binary=binaries.ensure_kubelet_portforward(),
        )
        caches = Caches.create(self.api_client, self.options.namespace)
        state = SimState(ctx, management_client(self.api_client), caches)
        self._state = state
        metrics = RuntimeMetrics(new_registry(process_collectors=False))

        def controller(
            name: str,
            reconciler: Callable[[ObjectKey], Result],
            informer: Informer,
            concurrency: int = 1,
        ) -> Controller:
            built = Controller(
                f"sim-{name}",
                reconciler,
                concurrency=concurrency,
                keys=lambda: _keys(informer),
                sync_period=_RESYNC,
                metrics=metrics,
            )
            self._controllers[name] = built
            return built

        local_cluster = controller(
            "localcluster", LocalClusterReconciler(state), caches.local_clusters
        )
        local_machine = controller(
            "localmachine",
            LocalMachineReconciler(state),
            caches.local_machines,
            concurrency=self.options.machine_concurrency,
        )

        def on(
            informer: Informer, target: Controller, mapping: Any, *, spec_only: bool = False
        ) -> None:
            handler = mapping.bind(target.enqueue)
            if spec_only:
                handler = _unless_status_only(handler)
            informer.add_handler(handler)

        def by_ref(path: tuple[str, ...]) -> Any:
            def keys(obj: dict[str, Any]) -> list[Key]:
                name = dig(obj, *path)
                return [(str(meta(obj).get("namespace") or ""), str(name))] if name else []

            return map_to(keys)

        # The simulator is the only writer of these kinds' status: its own writes wake nobody.
        on(caches.local_clusters, local_cluster, enqueue_self(), spec_only=True)
        on(caches.clusters, local_cluster, by_ref(("spec", "infrastructureRef", "name")))
        on(caches.machines, local_machine, by_ref(("spec", "infrastructureRef", "name")))
        on(caches.local_machines, local_machine, enqueue_self(), spec_only=True)

        for informer in caches.all():
            informer.start()
        deadline = time.monotonic() + _SYNC_TIMEOUT
        for informer in caches.all():
            if not informer.wait_for_sync(max(0.1, deadline - time.monotonic())):
                raise SimError(f"informer {informer.name} did not sync in {_SYNC_TIMEOUT:.0f}s")
        for built in self._controllers.values():
            built.start()
        if self.options.kubeconfig is not None:
            self.cluster_api = ClusterAPIProcesses(
                self.options.kubeconfig,
                CapiOptions(
                    namespace=self.options.namespace, work_dir=self.work_dir / "cluster-api"
                ),
            )
            self.cluster_api.start()
        _log.info("simulator started", work_dir=str(self.work_dir))

    def stop(self) -> None:
        """Stop reconciling, stop every process, release addresses, remove the run directory."""
        state = self._state
        if state is not None:
            state.ctx.stopping.set()
        if self.cluster_api is not None:
            self.cluster_api.stop()
            self.cluster_api = None
        for built in self._controllers.values():
            built.stop(timeout=5)
        self._controllers.clear()
        if state is not None:
            for informer in state.caches.all():
                informer.stop(timeout=2)
            with state.lock:
                clusters = list(state.clusters.values())
                state.clusters.clear()
                state.machines.clear()
            # Side by side: each machine's processes take a moment to stop, and a fleet
            # of them stopped one by one took half a minute.
            if clusters:
                with ThreadPoolExecutor(min(_TEARDOWN_THREADS, len(clusters))) as pool:
                    list(pool.map(SimCluster.teardown, clusters))
            state.ctx.addresses.close()
            self._state = None
        if self._launcher is not None:
            self._launcher.close()
            self._launcher = None
        if self._own_dir and not self.options.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- inspection ----------------------------------------------------------------

    @property
    def state(self) -> SimState:
        if self._state is None:
            raise SimError("the simulator is not running; call start() first")
        return self._state

    def clusters(self) -> list[SimCluster]:
        with self.state.lock:
            return list(self.state.clusters.values())

    def cluster(self, namespace: str, name: str) -> SimCluster | None:
        """A live cluster by its LocalCluster's name, or by its Cluster's name."""
        state = self.state
        with state.lock:
            found = state.clusters.get((namespace, name))
        return found or state.sim_cluster_for(namespace, name)

    def machine(self, namespace: str, name: str) -> SimMachine | None:
        """A live machine by its LocalMachine's name."""
        with self.state.lock:
            return self.state.machines.get((namespace, name))

    def wait_for_machine(self, namespace: str, name: str, timeout: float = 120.0) -> SimMachine:
        """Wait until the LocalMachine's processes serve and its node is registered."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.machine(namespace, name)
            if found is not None and found.provisioned:
                return found
            if time.monotonic() > deadline:
                raise SimError(f"machine {namespace}/{name} was not provisioned in {timeout:.0f}s")
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        """Every process the simulator runs now: `<namespace>/<machine>/<component>` -> pid."""
        found: dict[str, int] = {}
        with self.state.lock:
            machines = list(self.state.machines.values())
        for machine in machines:
            for component, pid in machine.pids().items():
                found[f"{machine.namespace}/{machine.name}/{component}"] = pid
        return found

    def addresses(self) -> list[str]:
        """Loopback addresses this run holds (machines and load balancers)."""
        return self.state.ctx.addresses.held

    # -- faults -------------------------------------------------------------------

    def inject(
        self, namespace: str, machine: str, component: Component | str, fault: Fault | str
    ) -> None:
        """Break one machine's etcd, API server or kubelet (see `kcp.sim.faults.Fault`)."""
        self._machine(namespace, machine).inject(Component(component), Fault(fault))

    def restore(self, namespace: str, machine: str, component: Component | str) -> None:
        """End a fault on one machine's component (it is restarted or resumed)."""
        self._machine(namespace, machine).restore(Component(component))

    def kill_node(
        self, namespace: str, machine: str, *, keep: tuple[Component | str, ...] = ()
    ) -> None:
        """Kill one machine's node agent (kubelet) and its processes, but those in `keep`."""
        kept = {Component(k) for k in keep}
        for component in (Component.KUBELET, Component.API_SERVER, Component.ETCD):
            if component not in kept:
                self.inject(namespace, machine, component, Fault.KILLED)

    def restore_node(self, namespace: str, machine: str) -> None:
        """End every fault on one machine: its processes and kubelet come back."""
        for component in (Component.ETCD, Component.API_SERVER, Component.KUBELET):
            self.restore(namespace, machine, component)

    def blackhole_endpoint(self, namespace: str, cluster: str) -> None:
        """Make the cluster's control-plane endpoint accept connections and never answer."""
        set_load_balancer_fault(self._cluster(namespace, cluster), Fault.BLACKHOLED)

    def restore_endpoint(self, namespace: str, cluster: str) -> None:
        set_load_balancer_fault(self._cluster(namespace, cluster), None)

    def _machine(self, namespace: str, name: str) -> SimMachine:
        found = self.machine(namespace, name)
        if found is None or not found.provisioned:
            raise SimError(f"no provisioned machine {namespace}/{name} in this simulator")
        return found

    def _cluster(self, namespace: str, name: str) -> SimCluster:
        found = self.cluster(namespace, name)
        if found is None or found.lb is None:
            raise SimError(f"no cluster {namespace}/{name} with a load balancer in this simulator")
        return found


def _unless_status_only(handler: EventHandler) -> EventHandler:
    """`handler`, skipping updates that changed nothing but status (and resourceVersion)."""

    def handle(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if (
            event_type == "MODIFIED"
            and old is not None
            and _without_status(old) == _without_status(obj)
        ):
            return
        handler(event_type, obj, old)

    return handle


def _without_status(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {
        k: v
        for k, v in meta(obj).items()
        if k not in ("resourceVersion", "managedFields", "generation")
    }
    return {"metadata": metadata, "spec": obj.get("spec")}


def _stop_at_exit(ref: weakref.ReferenceType[Simulator]) -> None:
    simulator = ref()
    if simulator is not None and simulator._state is not None:
        simulator.stop()


def _keys(informer: Informer) -> list[ObjectKey]:
    return [
        ObjectKey(str(meta(obj).get("namespace") or ""), str(meta(obj).get("name")))
        for obj in informer.list()
    ]
