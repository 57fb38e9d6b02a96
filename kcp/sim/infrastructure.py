"""The infrastructure provider proper: LocalCluster and LocalMachine controllers.

A LocalCluster gets a load balancer on a loopback address of its own (written
to `spec.controlPlaneEndpoint`) once a Cluster references it; it waits for
nothing else (the certificate Secrets may only come once the endpoint is
known). A LocalMachine is provisioned from its owner Machine's bootstrap data
Secret, as cloud-init and kubeadm would boot a real machine: an etcd member and
a kube-apiserver on its own address, a Node and mirror pods in the workload
cluster. Unusable bootstrap data is a condition on the LocalMachine, looked at
again with a growing delay. Deleting it stops exactly its processes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from kcp import certs
from kcp.api import groups, labels
from kcp.api.conditions import READY
from kcp.api.objects import dig
from kcp.rest import ApiError, Resource
from kcp.runtime import ObjectKey, Result, get_logger
from kcp.runtime.finalizers import add_finalizer, has_finalizer, remove_finalizer
from kcp.runtime.informer import Informer
from kcp.sim.bootdata import BootstrapData, BootstrapDataError, parse_bootstrap_secret
from kcp.sim.cluster import SimCluster
from kcp.sim.discovery import DiscoveryError
from kcp.sim.etcd_member import EtcdJoinError
from kcp.sim.faults import MACHINE_COMPONENTS, Component, Fault, faults_from_annotations
from kcp.sim.kubeadm import EtcdStartConflict
from kcp.sim.machine import MachineSpec, ProvisionError, SimMachine
from kcp.sim.objects import merged_conditions, meta, owner_name
from kcp.sim.pki import PKINotReady, load_cluster_pki
from kcp.sim.state import LOCAL_CLUSTER_FINALIZER, LOCAL_MACHINE_FINALIZER, SimState
from kcp.sim.workload import ContainerState

__all__ = [
    "API_SERVER_READY",
    "ETCD_READY",
    "LOAD_BALANCER_READY",
    "LocalClusterReconciler",
    "LocalMachineReconciler",
    "bootstrap_backoff",
    "set_load_balancer_fault",
]

_log = get_logger("kcp.sim")

WAIT = 2.0
"""Seconds between looks at something the simulator waits for and does not watch."""

ETCD_READY = "EtcdReady"
API_SERVER_READY = "APIServerReady"
LOAD_BALANCER_READY = "LoadBalancerReady"


def bootstrap_backoff(failures: int) -> float:
    """Seconds before looking again at bootstrap data that failed `failures` times in a row.

    Doubles from 2 s and stops at 60 s: a fix to the data is picked up within a
    minute, and a Secret that stays wrong costs one read and parse a minute.
    """
    return float(min(60, 2 ** max(1, min(failures, 6))))


def _cluster_name(obj: dict[str, Any]) -> str | None:
    return owner_name(obj, groups.CLUSTER.kind, groups.CLUSTER_GROUP) or (
        meta(obj).get("labels") or {}
    ).get(labels.CLUSTER_NAME_LABEL)


_Sim = TypeVar("_Sim")


class _LocalReconciler(ABC, Generic[_Sim]):
    """A LocalCluster's or LocalMachine's reconciler: first, the finalizer lifecycle both share.

    An object that is gone or being deleted has what runs for it released, then
    loses `finalizer`; a live one without `finalizer` gets it (the patch brings
    it back). Only a live object with it goes on to `_reconcile`.
    """

    resource: ClassVar[Resource]
    finalizer: ClassVar[str]

    def __init__(self, state: SimState) -> None:
        self.state = state

    def __call__(self, key: ObjectKey) -> Result:
        state = self.state
        obj = self._cache().get(key.namespace, key.name)
        with state.lock:
            sim = self._sims().get((key.namespace, key.name))
        if obj is None or meta(obj).get("deletionTimestamp"):
            if sim is not None:
                self._release(key, sim)
            if obj is not None:
                remove_finalizer(state.kube, self.resource, obj, self.finalizer)
            return Result()
        if not has_finalizer(obj, self.finalizer):
            add_finalizer(state.kube, self.resource, obj, self.finalizer)
            return Result()
        return self._reconcile(key, obj, sim)

    @abstractmethod
    def _cache(self) -> Informer:
        """The informer of the kind."""

    @abstractmethod
    def _sims(self) -> dict[tuple[str, str], _Sim]:
        """What runs for each object of the kind, by (namespace, name); guarded by the lock."""

    @abstractmethod
    def _release(self, key: ObjectKey, sim: _Sim) -> None:
        """Stop and forget what runs for the object at `key`."""

    @abstractmethod
    def _reconcile(self, key: ObjectKey, obj: dict[str, Any], sim: _Sim | None) -> Result:
        """Bring what runs for the live object `obj` (`sim`, if any yet) in line with it."""


class LocalClusterReconciler(_LocalReconciler[SimCluster]):
    """Load balancer and endpoint of one LocalCluster."""

    resource = groups.LOCAL_CLUSTER
    finalizer = LOCAL_CLUSTER_FINALIZER

    def _reconcile(self, key: ObjectKey, obj: dict[str, Any], sim: SimCluster | None) -> Result:
        state = self.state
        cluster_name = _cluster_name(obj) or self._referencing_cluster(key)
        if cluster_name is None:
            return self._status(obj, False, "WaitingForCluster", "no Cluster references it yet")
        uid = str(meta(obj).get("uid"))
        with state.lock:
            if sim is not None and sim.uid != uid:
                self._release(key, sim)
                sim = None
            if sim is None:
                sim = SimCluster(state.ctx, key.namespace, key.name, uid)
                state.clusters[(key.namespace, key.name)] = sim
        wanted_host = dig(obj, "spec", "controlPlaneEndpoint", "host")
        host, port = sim.start_load_balancer(prefer=wanted_host or None)
        if wanted_host and wanted_host != host:
            sim.stop_load_balancer()
            return self._status(
                obj,
                False,
                "EndpointUnavailable",
                f"spec.controlPlaneEndpoint.host {wanted_host} is taken on this machine; "
                "remove spec.controlPlaneEndpoint to let the simulator pick an address",
                10.0,
            )
        if dig(obj, "spec", "controlPlaneEndpoint") != {"host": host, "port": port}:
            state.kube.merge_patch(
                groups.LOCAL_CLUSTER,
                key.namespace,
                key.name,
                {"spec": {"controlPlaneEndpoint": {"host": host, "port": port}}},
            )
        self._apply_fault(sim, obj)
        result = self._status(obj, True, "Provisioned", f"load balancer at {host}:{port}")
        waiting = self._load_pki(key, cluster_name, sim)
        return Result(requeue_after=waiting) if waiting else result

    def _load_pki(self, key: ObjectKey, cluster_name: str, sim: SimCluster) -> float:
        """Load the cluster's authorities for the simulator's helpers once their Secrets exist.

        Nothing of the cluster's provisioning waits for them: the control plane
        provider creates them, possibly only after the endpoint is known.
        Returns the seconds until the next look (0 once loaded).
        """
        if sim.pki is not None:
            return 0.0
        try:
            sim.set_pki(load_cluster_pki(key.namespace, cluster_name, self._secret_reader(key)))
        except PKINotReady:
            return WAIT
        except certs.CertificateError as error:
            sim.log.warning(
                "cluster certificates unusable for the simulator's helpers", error=str(error)
            )
            return 10.0
        return 0.0

    def _referencing_cluster(self, key: ObjectKey) -> str | None:
        for cluster in self.state.caches.clusters.list(key.namespace):
            ref = dig(cluster, "spec", "infrastructureRef") or {}
            if ref.get("kind") == groups.LOCAL_CLUSTER.kind and ref.get("name") == key.name:
                return str(meta(cluster).get("name"))
        return None

    def _secret_reader(self, key: ObjectKey) -> Any:
        def read(name: str) -> dict[str, str] | None:
            secret = self.state.kube.get(groups.SECRET, key.namespace, name)
            return None if secret is None else dict(secret.get("data") or {})

        return read

    def _apply_fault(self, sim: SimCluster, obj: dict[str, Any]) -> None:
        wanted, problems = faults_from_annotations(
            meta(obj).get("annotations") or {}, (Component.LOAD_BALANCER,)
        )
        for problem in problems:
            _log.warning("ignoring fault annotation", problem=problem)
        fault = wanted.get(Component.LOAD_BALANCER)
        if fault is not None and sim.lb_fault is None:
            set_load_balancer_fault(sim, fault, from_annotation=True)
        elif fault is None and sim.lb_fault is not None and sim.lb_fault_from_annotation:
            set_load_balancer_fault(sim, None)

    def _cache(self) -> Informer:
        return self.state.caches.local_clusters

    def _sims(self) -> dict[tuple[str, str], SimCluster]:
        return self.state.clusters

    def _release(self, key: ObjectKey, sim: SimCluster) -> None:
        with self.state.lock:
            self.state.clusters.pop((key.namespace, key.name), None)
            for machine_key in [k for k, m in self.state.machines.items() if m.cluster is sim]:
                self.state.machines.pop(machine_key)
        sim.teardown()
        _log.info("cluster torn down", cluster=f"{key.namespace}/{key.name}")

    def _status(
        self, obj: dict[str, Any], ready: bool, reason: str, message: str, requeue: float = 0.0
    ) -> Result:
        name = str(meta(obj)["name"])
        namespace = str(meta(obj)["namespace"])
        conditions, changed = merged_conditions(
            obj,
            [
                (LOAD_BALANCER_READY, ready, reason, message),
                (READY, ready, reason, message),
            ],
        )
        provisioned = bool(dig(obj, "status", "initialization", "provisioned")) or ready
        status: dict[str, Any] = {
            "initialization": {"provisioned": provisioned},
            "ready": provisioned,
            "conditions": conditions,
        }
        failure_domains = dig(obj, "spec", "failureDomains")
        if isinstance(failure_domains, list):
            status["failureDomains"] = failure_domains
        current = dig(obj, "status") or {}
        if changed or any(current.get(k) != v for k, v in status.items() if k != "conditions"):
            self.state.kube.apply(
                groups.LOCAL_CLUSTER, namespace, name, {"status": status}, subresource="status"
            )
        return Result(requeue_after=requeue or None)


def set_load_balancer_fault(
    sim: SimCluster, fault: Fault | None, *, from_annotation: bool = False
) -> None:
    """Blackhole the cluster's endpoint (any fault but None), or restore it."""
    if sim.lb is None:
        raise ValueError(f"cluster {sim.namespace}/{sim.name} has no load balancer yet")
    if fault is None:
        sim.lb.restore()
        sim.lb_fault = None
        sim.lb_fault_from_annotation = False
        sim.log.info("load balancer restored")
        return
    sim.lb.blackhole()
    sim.lb_fault = Fault.BLACKHOLED
    sim.lb_fault_from_annotation = from_annotation
    sim.log.info("load balancer blackholed")


class LocalMachineReconciler(_LocalReconciler[SimMachine]):
    """Processes, kubelet reports and faults of one LocalMachine."""

    resource = groups.LOCAL_MACHINE
    finalizer = LOCAL_MACHINE_FINALIZER

    def _reconcile(self, key: ObjectKey, obj: dict[str, Any], sim: SimMachine | None) -> Result:
        state = self.state
        machine_name = owner_name(obj, groups.MACHINE.kind, groups.CLUSTER_GROUP)
        machine = state.caches.machines.get(key.namespace, machine_name) if machine_name else None
        if machine is None:
            return self._waiting(obj, "WaitingForMachine", "no Machine owns it yet")
        if not dig(machine, "spec", "bootstrap", "dataSecretName"):
            return self._waiting(
                obj, "WaitingForBootstrapData", f"Machine {machine_name} has no bootstrap data yet"
            )
        cluster_name = str(dig(machine, "spec", "clusterName") or "")
        cluster = state.caches.clusters.get(key.namespace, cluster_name)
        sim_cluster = state.sim_cluster_for(key.namespace, cluster_name)
        if cluster is None or sim_cluster is None or sim_cluster.lb is None:
            return self._waiting(
                obj,
                "WaitingForClusterInfrastructure",
                f"Cluster {cluster_name} has no endpoint yet",
            )
        uid = str(meta(obj).get("uid"))
        with state.lock:
            if sim is not None and (sim.uid != uid or sim.cluster is not sim_cluster):
                self._release(key, sim)
                sim = None
            if sim is None:
                sim = SimMachine(sim_cluster, key.name, uid)
                state.machines[(key.namespace, key.name)] = sim
                sim_cluster.machines[key.name] = sim
        if not sim.provisioned:
            try:
                boot = self._bootstrap_data(sim, machine)
            except BootstrapDataError as error:
                sim.bootstrap_failures += 1
                delay = bootstrap_backoff(sim.bootstrap_failures)
                sim.log.warning(
                    "bootstrap data unusable", reason=error.reason, error=str(error), retry=delay
                )
                return self._waiting(obj, error.reason, str(error), requeue=delay)
            sim.bootstrap_failures = 0
            return self._provision(obj, machine, cluster, sim, boot)
        self._apply_faults(sim, obj)
        sim.heal()
        states = sim.container_states()
        try:
            sim.heartbeat()
        except (ApiError, OSError, ProvisionError) as error:
            sim.log.debug("kubelet heartbeat failed", error=str(error))
        try:
            sim.report(states)
        except (ApiError, OSError, ProvisionError) as error:
            sim.log.debug("kubelet report failed", error=str(error))
        self._monitor_nodes(sim)
        self._status(obj, sim, states, dig(machine, "spec", "failureDomain"))
        return Result(requeue_after=state.ctx.options.kubelet_interval)

    def _monitor_nodes(self, sim: SimMachine) -> None:
        """The workload's node lifecycle controller, run on a machine whose kubelet lives."""
        monitor = sim.cluster.node_monitor
        if not sim.kubelet_alive or not monitor.due():
            return
        try:
            marked = monitor.check(sim.workload())
        except (ApiError, OSError, ProvisionError) as error:
            sim.log.debug("node lifecycle check failed", error=str(error))
            return
        for node in marked:
            sim.log.info("node marked unreachable: its kubelet stopped posting", node=node)

    def _bootstrap_data(self, sim: SimMachine, machine: dict[str, Any]) -> BootstrapData:
        """The Machine's bootstrap data Secret, parsed (once per version of the Secret)."""
        namespace = str(meta(machine).get("namespace"))
        secret_name = str(dig(machine, "spec", "bootstrap", "dataSecretName"))
        where = (
            f"bootstrap data Secret {namespace}/{secret_name} (Machine "
            f"{meta(machine).get('name')} spec.bootstrap.dataSecretName)"
        )
        secret = self.state.kube.get(groups.SECRET, namespace, secret_name)
        version = (
            (str(meta(secret).get("uid")), str(meta(secret).get("resourceVersion")))
            if secret is not None
            else None
        )
        if sim.bootstrap is not None and version is not None and version == sim.bootstrap_version:
            return sim.bootstrap
        boot = parse_bootstrap_secret(secret, where=where, hostname=sim.name)
        sim.bootstrap, sim.bootstrap_version = boot, version
        return boot

    def _provision(
        self,
        obj: dict[str, Any],
        machine: dict[str, Any],
        cluster: dict[str, Any],
        sim: SimMachine,
        boot: BootstrapData,
    ) -> Result:
        options = self.state.ctx.options
        spec = MachineSpec(
            version=str(dig(machine, "spec", "version") or "v1.34.4"),
            bootstrap=boot,
            default_service_cidr=options.default_service_cidr,
        )
        lock = sim.cluster.join_lock
        needs_lock = sim.etcd is None or not sim.etcd.process.started
        if needs_lock and not lock.acquire(blocking=False):
            self._waiting(obj, "WaitingForEtcdMembership", "another machine is joining etcd")
            return Result(requeue_after=1.0)
        try:
            if not dig(obj, "status", "conditions"):
                self._waiting(obj, "Provisioning", f"running {boot.command.value}")
            sim.provision(spec)
        except EtcdStartConflict as conflict:
            reason = "WaitingForEtcdMembership" if conflict.retry else "BootstrapDataConflict"
            sim.log.warning("kubeadm command does not fit the cluster", error=str(conflict))
            return self._waiting(
                obj, reason, str(conflict), requeue=2.0 if conflict.retry else 30.0
            )
        except EtcdJoinError as error:
            # etcd refuses a second MemberAdd until the last joiner has been connected a while.
            sim.log.info("etcd membership busy, will retry", error=str(error))
            return self._waiting(obj, "WaitingForEtcdMembership", str(error), requeue=2.0)
        except DiscoveryError as error:
            sim.log.warning("kubeadm join discovery failed, will retry", error=str(error))
            return self._waiting(obj, "JoinDiscoveryFailed", str(error), requeue=5.0)
        except (ProvisionError, ApiError, OSError) as error:
            sim.log.warning("provisioning failed, will retry", error=str(error).splitlines()[0])
            return self._waiting(obj, "ProvisioningFailed", str(error), requeue=5.0)
        finally:
            if needs_lock:
                lock.release()
        sim.log.info("machine provisioned", pids=sim.pids(), command=boot.command.value)
        self._status(obj, sim, sim.container_states(), dig(machine, "spec", "failureDomain"))
        return Result(requeue_after=options.kubelet_interval)

    def _apply_faults(self, sim: SimMachine, obj: dict[str, Any]) -> None:
        wanted, problems = faults_from_annotations(
            meta(obj).get("annotations") or {}, MACHINE_COMPONENTS
        )
        for problem in problems:
            sim.log.warning("ignoring fault annotation", problem=problem)
        for component in MACHINE_COMPONENTS:
            fault = wanted.get(component)
            current = sim.annotation_faults.get(component)
            if fault == current:
                continue
            if fault is None:
                sim.restore(component)
            else:
                sim.inject(component, fault)
                sim.annotation_faults[component] = fault

    def _cache(self) -> Informer:
        return self.state.caches.local_machines

    def _sims(self) -> dict[tuple[str, str], SimMachine]:
        return self.state.machines

    def _release(self, key: ObjectKey, sim: SimMachine) -> None:
        if sim.leftover_member():
            sim.log.warning(
                "etcd member of a deleted machine is still in the member list; kcp should "
                "remove it before the Machine goes",
                member=sim.etcd.name if sim.etcd else None,
            )
        pids = sim.pids()
        started = time.monotonic()
        with self.state.lock:
            self.state.machines.pop((key.namespace, key.name), None)
            if sim.cluster.machines.get(sim.name) is sim:
                sim.cluster.machines.pop(sim.name)
        sim.forget_node()
        sim.teardown()
        sim.log.info(
            "machine torn down", stopped=pids, seconds=round(time.monotonic() - started, 2)
        )

    def _waiting(
        self, obj: dict[str, Any], reason: str, message: str, requeue: float = 0.0
    ) -> Result:
        conditions, changed = merged_conditions(obj, [(READY, False, reason, message)])
        if changed:
            _log.info("machine waiting", name=meta(obj).get("name"), reason=reason)
            self.state.kube.apply(
                groups.LOCAL_MACHINE,
                str(meta(obj)["namespace"]),
                str(meta(obj)["name"]),
                {"status": {"conditions": conditions}},
                subresource="status",
            )
        return Result(requeue_after=requeue or None)

    def _status(
        self,
        obj: dict[str, Any],
        sim: SimMachine,
        states: dict[str, ContainerState],
        machine_failure_domain: str | None,
    ) -> None:
        """Write what runs: addresses, etcd member, API server, readiness of each."""
        namespace, name = str(meta(obj)["namespace"]), str(meta(obj)["name"])
        kube = self.state.kube
        if dig(obj, "spec", "providerID") != sim.provider_id:
            kube.merge_patch(
                groups.LOCAL_MACHINE, namespace, name, {"spec": {"providerID": sim.provider_id}}
            )
        etcd_ok = states["etcd"].ready
        api_ok = states["kube-apiserver"].ready
        faults = ", ".join(f"{c.value} {f.value}" for c, f in sim.faults.items())
        ready_message = f"faults: {faults}" if faults else "etcd and kube-apiserver serve"
        conditions, changed = merged_conditions(
            obj,
            [
                (ETCD_READY, etcd_ok, "Healthy" if etcd_ok else "NotHealthy", "etcd /health"),
                (
                    API_SERVER_READY,
                    api_ok,
                    "Ready" if api_ok else "NotReady",
                    "kube-apiserver /readyz",
                ),
                (
                    READY,
                    etcd_ok and api_ok,
                    "Ready" if etcd_ok and api_ok else "NotReady",
                    ready_message,
                ),
            ],
        )
        status: dict[str, Any] = {
            "initialization": {"provisioned": True},
            "ready": True,
            "addresses": [
                {"type": "InternalIP", "address": sim.address},
                {"type": "Hostname", "address": sim.node_name},
            ],
            "etcd": {
                "clientURL": sim.etcd.client_url if sim.etcd else "",
                "peerURL": sim.etcd.peer_url if sim.etcd else "",
                "memberID": f"{sim.etcd.member_id:x}" if sim.etcd and sim.etcd.member_id else "",
            },
            "apiServer": {"url": sim.apiserver.url if sim.apiserver else ""},
            "conditions": conditions,
        }
        failure_domain = dig(obj, "spec", "failureDomain") or machine_failure_domain
        if failure_domain:
            status["failureDomain"] = failure_domain
        current = dig(obj, "status") or {}
        if changed or any(current.get(k) != v for k, v in status.items() if k != "conditions"):
            kube.apply(
                groups.LOCAL_MACHINE, namespace, name, {"status": status}, subresource="status"
            )
