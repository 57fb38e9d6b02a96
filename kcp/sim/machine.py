"""One simulated control-plane machine: its etcd member, its API server, its kubelet's reports.

`provision()` does what `kubeadm init` or `kubeadm join --control-plane` does on
a real node, blocking until the machine serves (bounded by the options'
timeouts); the LocalMachine controller calls it from a worker. `sync()` is the
kubelet's periodic work: restart a crashed process that no fault holds down,
and report the static pods' state to the workload API server.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kcp.sim.apiserver import API_SERVER_PORT, APIServer
from kcp.sim.blackhole import Blackhole
from kcp.sim.cluster import SimCluster
from kcp.sim.etcd_member import (
    CLIENT_PORT,
    METRICS_PORT,
    PEER_PORT,
    EtcdJoinError,
    EtcdMember,
    add_member,
    list_members,
    remove_member,
)
from kcp.sim.faults import Component, Fault
from kcp.sim.pki import write_machine_files
from kcp.sim.process import SimProcess
from kcp.sim.workload import ContainerState, Kubelet

__all__ = ["MACHINE_PORTS", "ProvisionError", "SimMachine"]

MACHINE_PORTS = (CLIENT_PORT, PEER_PORT, METRICS_PORT, API_SERVER_PORT)
"""Ports every machine address must have free: etcd client, peer, metrics; kube-apiserver."""
_RESTART_BACKOFF = 5.0
_FAULT_PORTS = {Component.ETCD: CLIENT_PORT, Component.API_SERVER: API_SERVER_PORT}


class ProvisionError(RuntimeError):
    """A machine's process did not come up; the message carries the end of its log."""


@dataclass(frozen=True)
class MachineSpec:
    """What the owning Machine and Cluster ask of a machine."""

    version: str
    service_cidr: str
    extra_sans: Sequence[str] = ()


class SimMachine:
    """The simulator's state for one LocalMachine."""

    def __init__(self, cluster: SimCluster, name: str, uid: str) -> None:
        self.cluster = cluster
        self.name = name
        self.uid = uid
        self.node_name = name
        self.dir = cluster.dir / "machines" / name
        self.address: str | None = None
        self.etcd: EtcdMember | None = None
        self.apiserver: APIServer | None = None
        self.kubelet: Kubelet | None = None
        self.provisioned = False
        self.faults: dict[Component, Fault] = {}
        self.annotation_faults: dict[Component, Fault] = {}
        """The subset of `faults` set by annotations (removed with them)."""
        self._blackholes: dict[Component, Blackhole] = {}
        self._started_at: datetime | None = None
        self._last_restart: dict[Component, float] = {}
        self._lock = threading.RLock()
        """Serialises starts and stops: the kubelet's restarts, fault hooks, teardown."""
        self.log = cluster.log.bind(machine=name)

    def __repr__(self) -> str:
        return f"SimMachine({self.cluster.namespace}/{self.name}, address={self.address})"

    @property
    def namespace(self) -> str:
        return self.cluster.namespace

    @property
    def provider_id(self) -> str:
        return f"local:///{self.cluster.namespace}/{self.name}"

    def pids(self) -> dict[str, int]:
        """Process ids of the machine's running processes, by component."""
        found: dict[str, int] = {}
        for component, process in self._processes().items():
            if process.pid is not None:
                found[component.value] = process.pid
        return found

    def _processes(self) -> dict[Component, SimProcess]:
        processes: dict[Component, SimProcess] = {}
        if self.etcd is not None:
            processes[Component.ETCD] = self.etcd.process
        if self.apiserver is not None:
            processes[Component.API_SERVER] = self.apiserver.process
        return processes

    # -- provisioning ------------------------------------------------------------------

    def provision(self, spec: MachineSpec) -> None:
        """Bring the machine up (idempotent: a retry continues where a failure stopped)."""
        ctx = self.cluster.ctx
        pki = self.cluster.pki
        endpoint = self.cluster.endpoint
        if pki is None or endpoint is None or self.cluster.etcd_tls is None:
            raise ProvisionError("the cluster's certificates and endpoint are not ready")
        if self.address is None:
            self.address = ctx.addresses.allocate(MACHINE_PORTS)
            self.log = self.log.bind(address=self.address)
        if self.etcd is None or self.apiserver is None:
            files = write_machine_files(
                pki,
                self.dir / "pki",
                node_name=self.node_name,
                address=self.address,
                endpoint_host=endpoint[0],
                service_cidr=spec.service_cidr,
                extra_sans=spec.extra_sans,
                algorithm=ctx.options.key_algorithm,
            )
            self.etcd = EtcdMember(
                name=self.node_name,
                address=self.address,
                data_dir=self.dir / "etcd",
                files=files,
                process=SimProcess(
                    f"etcd-{self.name}", ctx.launcher, self.dir / "logs" / "etcd.log"
                ),
                binary=ctx.binaries.etcd,
            )
            self.apiserver = APIServer(
                address=self.address,
                etcd_url=self.etcd.client_url,
                files=files,
                process=SimProcess(
                    f"kube-apiserver-{self.name}",
                    ctx.launcher,
                    self.dir / "logs" / "kube-apiserver.log",
                ),
                binary=ctx.binaries.kube_apiserver,
                service_cidr=spec.service_cidr,
                extra_args=ctx.options.apiserver_extra_args,
            )
        if not self.etcd.process.started:
            self._start_etcd()
        elif not self.etcd.process.running and Component.ETCD not in self.faults:
            self.etcd.restart()
        if not self.apiserver.process.running and Component.API_SERVER not in self.faults:
            self.apiserver.start()
            self.log.info("kube-apiserver started", pid=self.apiserver.process.pid)
        _wait(
            self.apiserver.ready,
            timeout=ctx.options.apiserver_start_timeout,
            what=f"kube-apiserver of {self.name} to be ready",
            process=self.apiserver.process,
            stopping=ctx.stopping,
        )
        self._started_at = self._started_at or datetime.now(UTC)
        self.cluster.initialized = True
        if self.cluster.lb is not None:
            self.cluster.lb.set_backend(self.name, self.address, API_SERVER_PORT)
        if self.kubelet is None:
            self.kubelet = Kubelet(
                self.cluster.workload(self.apiserver.url),
                node_name=self.node_name,
                address=self.address,
                provider_id=self.provider_id,
                version=spec.version,
            )
        if not self.kubelet.registered:
            self.kubelet.register(self.container_states())
        self.provisioned = True

    def _start_etcd(self) -> None:
        """Start a new etcd cluster, or MemberAdd and join the running one."""
        assert self.etcd is not None
        cluster = self.cluster
        tls = cluster.etcd_tls
        assert tls is not None
        endpoints = cluster.etcd_endpoints(exclude=self)
        timeout = cluster.ctx.options.etcd_start_timeout
        if not endpoints:
            self.etcd.start_new(token=f"{cluster.namespace}-{cluster.name}-{cluster.uid[:8]}")
            self.log.info("etcd started a new cluster", pid=self.etcd.process.pid)
        else:
            plan = add_member(endpoints, tls, self.etcd.name, self.etcd.peer_url)
            self.log.info("etcd member added", member_id=f"{plan.member_id:x}", via=endpoints[0])
            self.etcd.start_join(plan)
            self.log.info("etcd joining", pid=self.etcd.process.pid)
        try:
            _wait(
                self.etcd.healthy,
                timeout=timeout,
                what=f"etcd of {self.name} to be healthy",
                process=self.etcd.process,
                stopping=cluster.ctx.stopping,
            )
        except ProvisionError:
            self._undo_etcd(endpoints)
            raise
        with contextlib.suppress(EtcdJoinError):
            for member in list_members([self.etcd.endpoint], tls):
                if self.etcd.peer_url in member.peer_urls:
                    self.etcd.member_id = member.id

    def _undo_etcd(self, endpoints: list[str]) -> None:
        """After a failed start: stop, drop the membership and the data; a retry starts clean."""
        assert self.etcd is not None
        self.etcd.process.stop(timeout=5)
        if endpoints and self.etcd.member_id is not None and self.cluster.etcd_tls is not None:
            try:
                remove_member(endpoints, self.cluster.etcd_tls, self.etcd.member_id)
            except EtcdJoinError as error:
                self.log.warning("could not roll back etcd member", error=str(error))
        shutil.rmtree(self.etcd.data_dir, ignore_errors=True)
        self.etcd = None
        self.apiserver = None

    # -- the kubelet -------------------------------------------------------------------

    def container_states(self) -> dict[str, ContainerState]:
        """The four static pods' states as a kubelet would see them now."""
        started = self._started_at
        states = {
            "kube-controller-manager": ContainerState(True, True, 0, started),
            "kube-scheduler": ContainerState(True, True, 0, started),
        }
        checks: dict[Component, tuple[str, Callable[[], bool]]] = {}
        if self.etcd is not None:
            checks[Component.ETCD] = ("etcd", self.etcd.healthy)
        if self.apiserver is not None:
            checks[Component.API_SERVER] = ("kube-apiserver", self.apiserver.ready)
        for component, (pod, check) in checks.items():
            process = self._processes()[component]
            fault = self.faults.get(component)
            hung = fault in (Fault.BLACKHOLED, Fault.FROZEN)
            running = process.running or hung
            states[pod] = ContainerState(
                running=running,
                ready=running and not hung and check(),
                restarts=process.restarts,
                started_at=started,
                reason=""
                if running
                else ("Error" if fault == Fault.KILLED else "CrashLoopBackOff"),
            )
        return states

    def heal(self) -> None:
        """Restart crashed processes no fault holds down, as the kubelet restarts static pods."""
        if not self.provisioned:
            return
        with self._lock:
            self._heal()

    def _heal(self) -> None:
        now = time.monotonic()
        for component, process in self._processes().items():
            if component in self.faults or process.running or not process.started:
                continue
            if now - self._last_restart.get(component, 0.0) < _RESTART_BACKOFF:
                continue
            self._last_restart[component] = now
            self.log.warning(
                "process exited, restarting", component=component.value, code=process.exit_code
            )
            self._start(component)

    def report(self, states: dict[str, ContainerState]) -> None:
        """Report the static pods' `states` (only what changed) through the cluster's endpoint."""
        if self.kubelet is not None and self.provisioned:
            self.kubelet.kube = self.cluster.workload()
            self.kubelet.sync(states)

    def _start(self, component: Component) -> None:
        if component is Component.ETCD and self.etcd is not None:
            self.etcd.restart()
        elif component is Component.API_SERVER and self.apiserver is not None:
            self.apiserver.start()

    # -- faults -----------------------------------------------------------------------

    def inject(self, component: Component, fault: Fault) -> None:
        """Break `component` the way `fault` says (see `kcp.sim.faults`)."""
        with self._lock:
            self._inject(component, fault)

    def _inject(self, component: Component, fault: Fault) -> None:
        process = self._processes().get(component)
        if process is None:
            raise ValueError(f"machine {self.name} has no {component.value} yet")
        if self.faults.get(component) == fault:
            return
        if component in self.faults:
            self._restore(component)
        self.faults[component] = fault
        self.log.info("fault injected", component=component.value, fault=fault.value)
        if fault is Fault.STOPPED:
            process.stop()
        elif fault is Fault.KILLED:
            process.kill()
        elif fault is Fault.FROZEN:
            process.freeze()
        elif fault is Fault.BLACKHOLED:
            process.stop(timeout=5)
            assert self.address is not None
            self._blackholes[component] = Blackhole(self.address, _FAULT_PORTS[component])

    def restore(self, component: Component) -> None:
        """End a fault: close the blackhole, resume or restart the process."""
        with self._lock:
            self._restore(component)

    def _restore(self, component: Component) -> None:
        fault = self.faults.pop(component, None)
        self.annotation_faults.pop(component, None)
        if fault is None:
            return
        blackhole = self._blackholes.pop(component, None)
        if blackhole is not None:
            blackhole.close()
        process = self._processes().get(component)
        if process is None:
            return
        process.thaw()
        if not process.running:
            self._start(component)
        self.log.info("fault restored", component=component.value, fault=fault.value)

    # -- teardown ---------------------------------------------------------------------

    def leftover_member(self) -> bool:
        """Whether the other members still list this machine's member (kcp did not remove it)."""
        if self.etcd is None or self.cluster.etcd_tls is None:
            return False
        others = self.cluster.etcd_endpoints(exclude=self)
        if not others:
            return False
        try:
            members = list_members(others, self.cluster.etcd_tls)
        except EtcdJoinError:
            return False
        return any(self.etcd.peer_url in m.peer_urls for m in members)

    def teardown(self) -> None:
        """Stop the processes, drop the data and give the address back."""
        with self._lock:
            self._teardown()

    def _teardown(self) -> None:
        if self.cluster.lb is not None:
            self.cluster.lb.remove_backend(self.name)
        for blackhole in self._blackholes.values():
            blackhole.close()
        self._blackholes.clear()
        self.faults.clear()
        for process in (self.apiserver, self.etcd):
            if process is not None:
                process.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.address is not None:
            self.cluster.ctx.addresses.release(self.address)
        self.provisioned = False


def _wait(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: SimProcess,
    stopping: threading.Event,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stopping.is_set():
            raise ProvisionError(f"the simulator is stopping; gave up waiting for {what}")
        if not process.running:
            raise ProvisionError(
                f"{process.name} exited with {process.exit_code} while waiting for {what}:\n"
                f"{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise ProvisionError(
                f"timed out after {timeout:.0f}s waiting for {what}:\n{process.log_tail()}"
            )
        time.sleep(0.2)
