"""One simulated control-plane machine: its etcd member, its API server, its kubelet.

`provision()` boots the machine from its bootstrap data as cloud-init and
kubeadm would on a real node: it writes the data's files to the machine's disk
(a directory), issues the node's certificates from the CAs in them, and runs
`kubeadm init` (a new etcd cluster, then the cluster's configuration and the
CoreDNS and kube-proxy add-ons uploaded) or `kubeadm join --control-plane`
(discovery with the bootstrap token, then an etcd member added as a learner
through the running ones and promoted). It blocks until the machine
serves (bounded by the options' timeouts); the LocalMachine controller calls
it from a worker. The kubelet is two halves: its API (`kcp.sim.kubelet_server`,
a process serving port-forwards to the machine's etcd and API server) and its
periodic work, `heal()` and `report()`: restart a crashed process that no
fault holds down, report the static pods' state to the workload API server,
renew the Node's Lease and run the cluster's node lifecycle controller
(`kcp.sim.node_lifecycle`). A faulted kubelet (`Component.KUBELET`) does none
of it: its Node goes unreachable as a real one's would.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from kcp.etcd import EtcdTLS
from kcp.rest import ApiError, Kube
from kcp.sim.apiserver import API_SERVER_PORT, AUDIT_LOG_UNROTATED, APIServer
from kcp.sim.blackhole import Blackhole
from kcp.sim.bootdata import BootstrapData, KubeadmCommand
from kcp.sim.clients import certificate_client
from kcp.sim.cluster import SimCluster
from kcp.sim.discovery import discover
from kcp.sim.etcd_member import (
    CLIENT_PORT,
    METRICS_PORT,
    PEER_PORT,
    EtcdJoinError,
    EtcdMember,
    add_member,
    list_members,
    promote_member,
    remove_member,
)
from kcp.sim.faults import Component, Fault
from kcp.sim.kubeadm import NodeSettings, etcd_start, node_settings
from kcp.sim.kubeadm_addons import addon_objects
from kcp.sim.kubeadm_init import (
    cluster_configuration_to_upload,
    cluster_info_kubeconfig,
    init_objects,
    kubelet_configuration,
)
from kcp.sim.kubelet_server import KUBELET_PORT, KubeletServer, write_kubelet_files
from kcp.sim.pki import MachineFiles, write_machine_files, write_private
from kcp.sim.process import SimProcess
from kcp.sim.workload import ContainerState, Kubelet, publish

__all__ = ["MACHINE_PORTS", "ProvisionError", "SimMachine"]

MACHINE_PORTS = (CLIENT_PORT, PEER_PORT, METRICS_PORT, API_SERVER_PORT, KUBELET_PORT)
"""Ports every machine address must have free: etcd client, peer, metrics; kube-apiserver;
the kubelet."""
_RESTART_BACKOFF = 5.0
_KUBELET_START_TIMEOUT = 30.0
_TEARDOWN_GRACE = 3.0
"""Seconds a deleted machine's processes get to exit after SIGTERM before SIGKILL: the
machine is gone either way, and with 10 s one of them (its etcd member already removed)
took all of it, on the rollout's path."""
_KUBELET_PKI_DIR = "/var/lib/kubelet/pki"
_FAULT_PORTS = {
    Component.ETCD: CLIENT_PORT,
    Component.API_SERVER: API_SERVER_PORT,
    Component.KUBELET: KUBELET_PORT,
}


class ProvisionError(RuntimeError):
    """A machine's process did not come up; the message carries the end of its log."""


@dataclass(frozen=True)
class MachineSpec:
    """What the owning Machine asks of a machine: its version and its bootstrap data."""

    version: str
    bootstrap: BootstrapData
    default_service_cidr: str = "10.96.0.0/12"
    """kubeadm's default, for a ClusterConfiguration that names no service subnet."""


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
        self.kubelet_server: KubeletServer | None = None
        self.kubelet: Kubelet | None = None
        self.files: MachineFiles | None = None
        self.etcd_tls: EtcdTLS | None = None
        """The machine's own etcd client identity (its API server's), from its bootstrap data."""
        self.settings: NodeSettings | None = None
        self.provisioned = False
        self.bootstrap: BootstrapData | None = None
        self.bootstrap_version: tuple[str, str] | None = None
        """(Secret uid, resourceVersion) `bootstrap` was parsed from: parse each version once."""
        self.bootstrap_failures = 0
        """Consecutive reconciles that found the bootstrap data unusable (for the backoff)."""
        self.faults: dict[Component, Fault] = {}
        self.annotation_faults: dict[Component, Fault] = {}
        """The subset of `faults` set by annotations (removed with them)."""
        self._blackholes: dict[Component, Blackhole] = {}
        self._started_at: datetime | None = None
        self._last_restart: dict[Component, float] = {}
        self._kubelet_restarted_at = 0.0
        self._last_heartbeat = 0.0
        self._init_uploaded = False
        self._clients: dict[str, Kube] = {}
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

    @property
    def root(self) -> Path:
        """The node's disk: `/etc/kubernetes/pki/ca.crt` is `root/etc/kubernetes/pki/ca.crt`."""
        return self.dir / "root"

    def host_path(self, node_path: str) -> str:
        """Where a path on the node lives on this machine's disk (its parent created)."""
        path = self.root / node_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def pids(self) -> dict[str, int]:
        """Process ids of the machine's running processes, by component."""
        found: dict[str, int] = {}
        for component, process in self._processes().items():
            if process.pid is not None:
                found[component.value] = process.pid
        if self.kubelet_server is not None and self.kubelet_server.process.pid is not None:
            found["kubelet"] = self.kubelet_server.process.pid
        return found

    def _processes(self) -> dict[Component, SimProcess]:
        processes: dict[Component, SimProcess] = {}
        if self.etcd is not None:
            processes[Component.ETCD] = self.etcd.process
        if self.apiserver is not None:
            processes[Component.API_SERVER] = self.apiserver.process
        return processes

    def _fault_target(self, component: Component) -> SimProcess | None:
        """The process a fault on `component` acts on (the kubelet's: its server)."""
        if component is Component.KUBELET:
            return self.kubelet_server.process if self.kubelet_server is not None else None
        return self._processes().get(component)

    @property
    def kubelet_alive(self) -> bool:
        """No fault holds the node agent down."""
        return Component.KUBELET not in self.faults

    def workload(self, server_url: str | None = None) -> Kube:
        """The node's own admin client of the workload API (the endpoint unless `server_url`).

        It authenticates with the certificate the node issued itself from the
        cluster CA in its bootstrap data, as kubeadm's super-admin.conf.
        """
        url = server_url or self.cluster.server_url
        files = self.files
        if url is None or files is None:
            raise ProvisionError(f"machine {self.name} has no certificates or endpoint yet")
        kube = self._clients.get(url)
        if kube is None:
            kube = certificate_client(
                url,
                ca_file=files.ca_crt,
                cert_file=files.admin_crt,
                key_file=files.admin_key,
                timeout=self.cluster.ctx.options.workload_timeout,
            )
            self._clients[url] = kube
        return kube

    # -- provisioning ------------------------------------------------------------------

    def provision(self, spec: MachineSpec) -> None:
        """Do what cloud-init and `kubeadm init`/`join` do (idempotent: a retry continues).

        Raises `ProvisionError` (a process did not come up), `DiscoveryError`
        (a joining node could not find or trust the cluster) or
        `EtcdStartConflict` (the kubeadm command does not fit the running cluster).
        """
        ctx = self.cluster.ctx
        endpoint = self.cluster.endpoint
        if endpoint is None:
            raise ProvisionError("the cluster's endpoint is not serving yet")
        boot = spec.bootstrap
        if self.address is None:
            self.address = ctx.addresses.allocate(MACHINE_PORTS)
            self.log = self.log.bind(address=self.address)
            self.log.info("provisioning", command=boot.command.value)
        if self.etcd is None or self.apiserver is None:
            self._prepare(spec, endpoint)
        assert self.etcd is not None and self.apiserver is not None
        if not self.etcd.process.started:
            self._start_etcd(boot.command)
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
        self.log.info("kube-apiserver ready")
        self._started_at = self._started_at or datetime.now(UTC)
        self._start_kubelet_server()
        if boot.is_init and not self._init_uploaded:
            self._upload_init_objects(spec, endpoint)
        self.cluster.initialized = True
        if self.cluster.lb is not None and self.files is not None:
            self.cluster.lb.set_backend(
                self.name, self.address, API_SERVER_PORT, ca_file=str(self.files.ca_crt)
            )
        if self.kubelet is None:
            self.kubelet = Kubelet(
                self.workload(self.apiserver.url),
                node_name=self.node_name,
                address=self.address,
                provider_id=self.provider_id,
                version=spec.version,
            )
        if not self.kubelet.registered:
            self.kubelet.register(self.container_states())
        self.provisioned = True

    def _prepare(self, spec: MachineSpec, endpoint: tuple[str, int]) -> None:
        """cloud-init's write_files, kubeadm's certificates, and the processes' settings."""
        assert self.address is not None
        ctx = self.cluster.ctx
        boot = spec.bootstrap
        self.node_name = boot.node_name or self.name
        for file in boot.files.values():
            write_private(Path(self.host_path(file.path)), file.content)
        if boot.is_init:
            cluster_configuration = boot.cluster_configuration
        else:
            assert boot.discovery is not None
            _, cluster_configuration = discover(
                boot.discovery, timeout=ctx.options.workload_timeout
            )
            self.log.info("discovered the cluster", endpoint=boot.discovery.api_server_endpoint)
        settings = node_settings(
            cluster_configuration,
            default_service_cidr=spec.default_service_cidr,
            host_path=self.host_path,
        )
        for ignored in settings.ignored:
            self.log.warning("extra argument not passed on", argument=ignored)
        files = write_machine_files(
            boot.authorities,
            Path(self.host_path(posixpath.join(boot.certificates_dir, "ca.crt"))).parent,
            node_name=self.node_name,
            address=self.address,
            endpoint_host=endpoint[0],
            service_cidr=settings.service_cidr,
            extra_sans=settings.cert_sans,
            etcd_server_sans=settings.etcd_server_sans,
            etcd_peer_sans=settings.etcd_peer_sans,
            algorithm=ctx.options.key_algorithm,
        )
        self.files = files
        self.settings = settings
        self._clients.clear()
        self.etcd_tls = files.etcd_client_tls(source=f"{boot.where}: etcd CA")
        kubelet_files = write_kubelet_files(
            boot.authorities.ca,
            Path(self.host_path(posixpath.join(_KUBELET_PKI_DIR, "kubelet.crt"))).parent,
            files.ca_crt,
            node_name=self.node_name,
            address=self.address,
            algorithm=ctx.options.key_algorithm,
        )
        if self.kubelet_server is not None:
            self.kubelet_server.process.stop()
        self.kubelet_server = KubeletServer(
            address=self.address,
            files=kubelet_files,
            forwards={
                f"etcd-{self.node_name}:{CLIENT_PORT}": f"{self.address}:{CLIENT_PORT}",
                f"kube-apiserver-{self.node_name}:{API_SERVER_PORT}": (
                    f"{self.address}:{API_SERVER_PORT}"
                ),
            },
            process=SimProcess(
                f"kubelet-{self.name}",
                ctx.launcher,
                self.dir / "logs" / "kubelet.log",
                ctx.options.process_env,
            ),
            binary=ctx.kubelet_binary,
            client_cert=files.apiserver_kubelet_client_crt,
            client_key=files.apiserver_kubelet_client_key,
        )
        self.etcd = EtcdMember(
            name=self.node_name,
            address=self.address,
            data_dir=self.dir / "etcd",
            files=files,
            process=SimProcess(
                f"etcd-{self.name}",
                ctx.launcher,
                self.dir / "logs" / "etcd.log",
                ctx.options.process_env,
            ),
            binary=ctx.binaries.etcd,
            extra_args=settings.etcd_args,
        )
        self.apiserver = APIServer(
            address=self.address,
            etcd_url=self.etcd.client_url,
            files=files,
            process=SimProcess(
                f"kube-apiserver-{self.name}",
                ctx.launcher,
                self.dir / "logs" / "kube-apiserver.log",
                ctx.options.process_env,
            ),
            binary=ctx.binaries.kube_apiserver,
            service_cidr=settings.service_cidr,
            extra_args=(
                *settings.apiserver_args,
                *ctx.options.apiserver_extra_args,
                *self._audit_args(),
            ),
        )

    def _audit_args(self) -> tuple[str, ...]:
        policy = self.cluster.ctx.options.apiserver_audit_policy
        if policy is None:
            return ()
        return (
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            AUDIT_LOG_UNROTATED,
        )

    @property
    def audit_log(self) -> Path:
        """Where the API server writes its audit log (with `apiserver_audit_policy` set)."""
        return self.dir / "logs" / "audit.log"

    def _start_kubelet_server(self) -> None:
        """Serve the kubelet's port-forward endpoint (the API server proxies to it)."""
        server = self.kubelet_server
        assert server is not None
        if not server.process.running:
            server.start()
            self.log.info("kubelet started", pid=server.process.pid)
        _wait(
            server.ready,
            timeout=_KUBELET_START_TIMEOUT,
            what=f"the kubelet of {self.name} to serve",
            process=server.process,
            stopping=self.cluster.ctx.stopping,
        )

    def _upload_init_objects(self, spec: MachineSpec, endpoint: tuple[str, int]) -> None:
        """What `kubeadm init` creates in the new cluster (idempotent)."""
        boot = spec.bootstrap
        settings = self.settings
        assert settings is not None and self.apiserver is not None
        cluster_configuration = cluster_configuration_to_upload(
            boot.cluster_configuration,
            version=spec.version,
            endpoint=f"{endpoint[0]}:{endpoint[1]}",
        )
        server = f"https://{cluster_configuration['controlPlaneEndpoint']}"
        tokens = _dig_list(boot.init_configuration, "bootstrapTokens")
        objects = init_objects(
            cluster_configuration=cluster_configuration,
            kubelet_config=kubelet_configuration(
                service_cidr=settings.service_cidr,
                dns_domain=settings.dns_domain,
                certificates_dir=settings.certificates_dir,
                overrides=boot.kubelet_configuration,
            ),
            cluster_info=cluster_info_kubeconfig(boot.authorities.ca.cert_pem, server),
            bootstrap_tokens=tokens,
        )
        kube = self.workload(self.apiserver.url)
        publish(kube, objects)
        addons = addon_objects(
            cluster_configuration,
            skip_phases=[str(p) for p in (boot.init_configuration or {}).get("skipPhases") or []],
        )
        publish(kube, addons, update=False)
        self._init_uploaded = True
        self.log.info("uploaded what kubeadm init creates", objects=len(objects) + len(addons))

    def _start_etcd(self, command: KubeadmCommand) -> None:
        """Start a new etcd cluster (init), or MemberAdd and join the running one (join)."""
        assert self.etcd is not None and self.etcd_tls is not None
        cluster = self.cluster
        tls = self.etcd_tls
        running = {
            m.name: m.etcd.endpoint
            for m in list(cluster.machines.values())
            if m is not self and m.etcd is not None and m.etcd.process.running
        }
        endpoints = list(running.values())
        timeout = cluster.ctx.options.etcd_start_timeout
        if etcd_start(command, sorted(running)) == "new":
            endpoints = []
            self.etcd.start_new(token=f"{cluster.namespace}-{cluster.name}-{cluster.uid[:8]}")
            self.log.info("etcd started a new cluster", pid=self.etcd.process.pid)
        else:
            plan = add_member(endpoints, tls, self.etcd.name, self.etcd.peer_url, learner=True)
            self.log.info("etcd member added", member_id=f"{plan.member_id:x}", via=endpoints[0])
            self.etcd.start_join(plan)
            self.log.info("etcd joining", pid=self.etcd.process.pid)
        try:
            if endpoints:
                self._promote(endpoints, timeout)
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
        self.log.info("etcd healthy")
        if self.etcd.member_id is not None:
            return  # a joiner has its id from MemberAdd; asking again cost up to a 2 s dial
        with contextlib.suppress(EtcdJoinError):
            for member in list_members([self.etcd.endpoint], tls):
                if self.etcd.peer_url in member.peer_urls:
                    self.etcd.member_id = member.id

    def _promote(self, endpoints: list[str], timeout: float) -> None:
        """Promote the learner once it serves and has caught up, as `kubeadm join` does: the
        cluster keeps its quorum while the new member starts. It must answer on its client
        port both before the promotion and as a voter after it before the join goes on."""
        etcd, tls = self.etcd, self.etcd_tls
        assert etcd is not None and tls is not None
        member_id = etcd.member_id
        assert member_id is not None
        steps: list[tuple[str, Callable[[], bool]]] = [
            ("to serve as a learner", partial(etcd.serves, tls, as_learner=True)),
            ("to catch up and be promoted", partial(promote_member, endpoints, tls, member_id)),
            ("to serve as a voting member", partial(etcd.serves, tls, as_learner=False)),
        ]
        for what, done in steps:
            _wait(
                done,
                timeout=timeout,
                what=f"etcd member of {self.name} {what}",
                process=etcd.process,
                stopping=self.cluster.ctx.stopping,
            )
        self.log.info("etcd member promoted")

    def _undo_etcd(self, endpoints: list[str]) -> None:
        """After a failed start: stop, drop the membership and the data; a retry starts clean."""
        assert self.etcd is not None
        self.etcd.process.stop(timeout=5)
        if endpoints and self.etcd.member_id is not None and self.etcd_tls is not None:
            try:
                remove_member(endpoints, self.etcd_tls, self.etcd.member_id)
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
        if not self.provisioned or not self.kubelet_alive:
            return  # a dead kubelet restarts nothing
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
        server = self.kubelet_server
        if server is None or server.process.running or not server.process.started:
            return
        if now - self._kubelet_restarted_at >= _RESTART_BACKOFF:
            # systemd restarts a kubelet that exits.
            self._kubelet_restarted_at = now
            self.log.warning("kubelet exited, restarting", code=server.process.exit_code)
            server.start()

    def report(self, states: dict[str, ContainerState]) -> None:
        """Report the static pods' `states` (only what changed) through the cluster's endpoint."""
        if (
            self.kubelet is not None
            and self.provisioned
            and self.kubelet_alive
            and self.cluster.server_url is not None
        ):
            self.kubelet.kube = self.workload()
            self.kubelet.sync(states)

    def heartbeat(self) -> None:
        """Renew the Node's Lease every `node_lease_renew_interval` while the kubelet lives."""
        if self.kubelet is None or not self.provisioned or not self.kubelet_alive:
            return
        now = time.monotonic()
        if now - self._last_heartbeat < self.cluster.ctx.options.node_lease_renew_interval:
            return
        if self.cluster.server_url is not None:
            self.kubelet.kube = self.workload()
            self.kubelet.heartbeat()
            self._last_heartbeat = now  # a failed renewal is tried again at the next sync

    def _start(self, component: Component) -> None:
        if component is Component.ETCD and self.etcd is not None:
            self.etcd.restart()
        elif component is Component.API_SERVER and self.apiserver is not None:
            self.apiserver.start()
        elif component is Component.KUBELET and self.kubelet_server is not None:
            self.kubelet_server.start()
            self._last_heartbeat = 0.0  # back: renew the Lease (and post Ready) at once

    # -- faults -----------------------------------------------------------------------

    def inject(self, component: Component, fault: Fault) -> None:
        """Break `component` the way `fault` says (see `kcp.sim.faults`)."""
        with self._lock:
            self._inject(component, fault)

    def _inject(self, component: Component, fault: Fault) -> None:
        process = self._fault_target(component)
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
        process = self._fault_target(component)
        if process is None:
            return
        process.thaw()
        if not process.running:
            self._start(component)
        self.log.info("fault restored", component=component.value, fault=fault.value)

    # -- teardown ---------------------------------------------------------------------

    def leftover_member(self) -> bool:
        """Whether the other members still list this machine's member (kcp did not remove it)."""
        tls = self.etcd_tls or self.cluster.etcd_tls
        if self.etcd is None or tls is None:
            return False
        others = self.cluster.etcd_endpoints(exclude=self)
        if not others:
            return False
        try:
            members = list_members(others, tls)
        except EtcdJoinError:
            return False
        return any(self.etcd.peer_url in m.peer_urls for m in members)

    def forget_node(self) -> None:
        """Delete the machine's Node and mirror pods, as the cluster's controllers would.

        With the machine gone, a cloud controller manager deletes its Node and
        the pod garbage collector its pods; neither runs in a simulated
        cluster. Best effort, through another machine's API server (none
        left: the cluster goes with it).
        """
        if self.kubelet is None or not self.kubelet.registered:
            return
        others = [
            m.apiserver.url
            for m in list(self.cluster.machines.values())
            if m is not self and m.apiserver is not None and m.apiserver.process.running
        ]
        if not others:
            return
        try:
            self.kubelet.kube = self.workload(others[0])
            self.kubelet.deregister()
        except (ApiError, OSError, ProvisionError) as error:
            self.log.info("could not delete the machine's Node and pods", error=str(error))

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
        processes = [p.process for p in (self.kubelet_server, self.apiserver, self.etcd) if p]
        for process in processes:
            process.terminate()
        for process in processes:
            process.stop(timeout=_TEARDOWN_GRACE)
        if self.apiserver is not None:
            self.apiserver.close()
        clients = list(self._clients.values())
        self._clients.clear()
        for kube in clients:
            with contextlib.suppress(Exception):
                kube.api_client.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.address is not None:
            self.cluster.ctx.addresses.release(self.address)
        self.provisioned = False


def _dig_list(obj: Mapping[str, Any] | None, key: str) -> list[Mapping[str, Any]]:
    value = obj.get(key) if obj is not None else None
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


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
