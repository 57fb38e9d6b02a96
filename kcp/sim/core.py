"""The small part of Cluster API core kcp relies on, played locally for local machines only.

In a real management cluster Cluster API's own controllers do this; the
simulator never runs there. Cluster: owner references on its LocalCluster and
control plane, the endpoint and `status.failureDomains` copied from the
LocalCluster, and `status.initialization` (`infrastructureProvisioned`, then
`controlPlaneInitialized` once the control plane says so or an API server of
the cluster first answered). Machine: bootstrap data, provider ID, addresses,
node reference, conditions (readiness gates included) and phase from its
KubeadmConfig and LocalMachine; on deletion it waits for pre-terminate hooks
(kcp's etcd clean-up), deletes the LocalMachine and KubeadmConfig, then the Node.
"""

from __future__ import annotations

from typing import Any

from kcp.api import conditions as cond
from kcp.api import groups, labels
from kcp.runtime import ObjectKey, Result, get_logger
from kcp.sim.kube import ApiError
from kcp.sim.objects import (
    dig,
    ensure_finalizer,
    ensure_owner,
    merged_conditions,
    meta,
    remove_finalizer,
)
from kcp.sim.state import MACHINE_FINALIZER, SimState
from kcp.sim.workload import Kubelet

__all__ = ["ClusterReconciler", "MachineReconciler", "failure_domains", "machine_phase"]

_log = get_logger("kcp.sim")
WAIT = 2.0
NODE_READY = "NodeReady"
AVAILABLE = "Available"
OWNED_CONDITIONS = frozenset(
    {
        cond.BOOTSTRAP_CONFIG_READY,
        cond.INFRASTRUCTURE_READY,
        NODE_READY,
        cond.NODE_HEALTHY,
        cond.READY,
        AVAILABLE,
        cond.DELETING,
    }
)
"""Machine condition types the simulator sets (kcp sets the per-machine pod and etcd ones)."""
OWNED_STATUS_FIELDS = frozenset(
    {
        "initialization",
        "phase",
        "addresses",
        "nodeRef",
        "failureDomain",
        "certificatesExpiryDate",
        "conditions",
    }
)


class ClusterReconciler:
    """Owner references, endpoint and initialization status of one Cluster."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def __call__(self, key: ObjectKey) -> Result:
        state = self.state
        cluster = state.caches.clusters.get(key.namespace, key.name)
        if cluster is None or meta(cluster).get("deletionTimestamp"):
            return Result()
        infra_ref = dig(cluster, "spec", "infrastructureRef") or {}
        if infra_ref.get("kind") != groups.LOCAL_CLUSTER.kind:
            return Result()
        cluster_label = {labels.CLUSTER_NAME_LABEL: key.name}
        infra = state.caches.local_clusters.get(key.namespace, str(infra_ref.get("name")))
        if infra is not None:
            ensure_owner(state.kube, groups.LOCAL_CLUSTER, infra, cluster, labels=cluster_label)
        cp_ref = dig(cluster, "spec", "controlPlaneRef") or {}
        control_plane = None
        if cp_ref.get("kind") == groups.KUBEADM_CONTROL_PLANE.kind:
            control_plane = state.caches.control_planes.get(key.namespace, str(cp_ref.get("name")))
            if control_plane is not None:
                ensure_owner(
                    state.kube,
                    groups.KUBEADM_CONTROL_PLANE,
                    control_plane,
                    cluster,
                    labels=cluster_label,
                )
        endpoint = dig(infra, "spec", "controlPlaneEndpoint") or {}
        if endpoint.get("host") and not dig(cluster, "spec", "controlPlaneEndpoint", "host"):
            state.kube.merge_patch(
                groups.CLUSTER,
                key.namespace,
                key.name,
                {
                    "spec": {
                        "controlPlaneEndpoint": {"host": endpoint["host"], "port": endpoint["port"]}
                    }
                },
            )
        provisioned = dig(infra, "status", "initialization", "provisioned") is True
        sim = state.sim_cluster_for(key.namespace, key.name)
        initialized = (
            dig(cluster, "status", "initialization", "controlPlaneInitialized") is True
            or dig(control_plane, "status", "initialization", "controlPlaneInitialized") is True
            or (sim is not None and sim.initialized)
        )
        self._status(cluster, provisioned, initialized, failure_domains(infra))
        if not initialized:
            return Result(requeue_after=WAIT)
        return Result()

    def _status(
        self,
        cluster: dict[str, Any],
        provisioned: bool,
        initialized: bool,
        domains: list[dict[str, Any]] | None,
    ) -> None:
        wanted = [
            (
                cond.INFRASTRUCTURE_READY,
                provisioned,
                cond.READY_REASON if provisioned else cond.NOT_READY_REASON,
                "LocalCluster load balancer serving" if provisioned else "waiting for LocalCluster",
            ),
            (
                "ControlPlaneInitialized",
                initialized,
                cond.INITIALIZED_REASON if initialized else cond.NOT_INITIALIZED_REASON,
                "an API server answered" if initialized else "waiting for the first API server",
            ),
        ]
        conditions, changed = merged_conditions(cluster, wanted)
        phase = "Provisioned" if provisioned else "Provisioning"
        initialization = {
            "infrastructureProvisioned": provisioned,
            "controlPlaneInitialized": initialized,
        }
        current = dig(cluster, "status") or {}
        status: dict[str, Any] = {
            "initialization": initialization,
            "phase": phase,
            "conditions": conditions,
        }
        if domains is not None:
            # Left out when the LocalCluster lists none: server-side apply then drops it.
            status["failureDomains"] = domains
        if (
            changed
            or current.get("phase") != phase
            or current.get("initialization") != initialization
            or current.get("failureDomains") != domains
        ):
            self.state.kube.apply(
                groups.CLUSTER,
                str(meta(cluster)["namespace"]),
                str(meta(cluster)["name"]),
                {"status": status},
                subresource="status",
            )


def failure_domains(infra: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The LocalCluster's `status.failureDomains` as Cluster API core copies them to the
    Cluster (v1beta2: a list of `{name, controlPlane, attributes}`); None if it has none."""
    value = dig(infra, "status", "failureDomains")
    if not isinstance(value, list):
        return None
    domains = []
    for entry in value:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        domain: dict[str, Any] = {"name": str(entry["name"])}
        if isinstance(entry.get("controlPlane"), bool):
            domain["controlPlane"] = entry["controlPlane"]
        if isinstance(entry.get("attributes"), dict) and entry["attributes"]:
            domain["attributes"] = {str(k): str(v) for k, v in entry["attributes"].items()}
        domains.append(domain)
    return domains or None


def machine_phase(
    deleting: bool, bootstrap_ready: bool, infra_ready: bool, node_ref: str | None
) -> str:
    """Cluster API's Machine phase from what is known about it."""
    if deleting:
        return "Deleting"
    if node_ref:
        return "Running"
    if infra_ready:
        return "Provisioned"
    if bootstrap_ready:
        return "Provisioning"
    return "Pending"


class MachineReconciler:
    """Status and deletion of one Machine whose infrastructure is a LocalMachine."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def __call__(self, key: ObjectKey) -> Result:
        state = self.state
        machine = state.caches.machines.get(key.namespace, key.name)
        if machine is None:
            return Result()
        infra_ref = dig(machine, "spec", "infrastructureRef") or {}
        if infra_ref.get("kind") != groups.LOCAL_MACHINE.kind:
            return Result()
        if meta(machine).get("deletionTimestamp"):
            return self._delete(key, machine)
        if ensure_finalizer(state.kube, groups.MACHINE, machine, MACHINE_FINALIZER):
            return Result()
        cluster_name = str(dig(machine, "spec", "clusterName") or "")
        owner_labels = {labels.CLUSTER_NAME_LABEL: cluster_name}
        config_ref = dig(machine, "spec", "bootstrap", "configRef") or {}
        config = None
        if config_ref.get("kind") == groups.KUBEADM_CONFIG.kind:
            config = state.caches.kubeadm_configs.get(key.namespace, str(config_ref.get("name")))
            if config is not None:
                ensure_owner(
                    state.kube, groups.KUBEADM_CONFIG, config, machine, labels=owner_labels
                )
        infra = state.caches.local_machines.get(key.namespace, str(infra_ref.get("name")))
        if infra is not None:
            ensure_owner(state.kube, groups.LOCAL_MACHINE, infra, machine, labels=owner_labels)

        spec_patch: dict[str, Any] = {}
        data_secret = dig(machine, "spec", "bootstrap", "dataSecretName")
        if not data_secret and dig(config, "status", "initialization", "dataSecretCreated") is True:
            data_secret = dig(config, "status", "dataSecretName")
            if data_secret:
                spec_patch["bootstrap"] = {"dataSecretName": data_secret}
        provider_id = dig(infra, "spec", "providerID")
        if provider_id and dig(machine, "spec", "providerID") != provider_id:
            spec_patch["providerID"] = provider_id
        if spec_patch:
            state.kube.merge_patch(groups.MACHINE, key.namespace, key.name, {"spec": spec_patch})

        bootstrap_ready = bool(data_secret)
        infra_ready = dig(infra, "status", "initialization", "provisioned") is True
        addresses = dig(infra, "status", "addresses") or []
        node_name = (
            next((a.get("address") for a in addresses if a.get("type") == "Hostname"), None)
            if infra_ready
            else None
        )
        self._status(machine, infra, bootstrap_ready, infra_ready, node_name)
        if node_name is None:
            return Result(requeue_after=WAIT)
        return Result()

    def _status(
        self,
        machine: dict[str, Any],
        infra: dict[str, Any] | None,
        bootstrap_ready: bool,
        infra_ready: bool,
        node_name: str | None,
    ) -> None:
        node_ready = node_name is not None
        gates_ok, gate_message = self._readiness_gates(machine)
        ready = bootstrap_ready and infra_ready and node_ready and gates_ok
        not_ready = [
            what
            for what, ok in (
                ("bootstrap data", bootstrap_ready),
                ("infrastructure", infra_ready),
                ("node", node_ready),
            )
            if not ok
        ]
        message = f"waiting for {', '.join(not_ready)}" if not_ready else gate_message
        wanted = [
            (
                cond.BOOTSTRAP_CONFIG_READY,
                bootstrap_ready,
                cond.READY_REASON if bootstrap_ready else cond.NOT_READY_REASON,
                "bootstrap data secret created" if bootstrap_ready else "waiting for KubeadmConfig",
            ),
            (
                cond.INFRASTRUCTURE_READY,
                infra_ready,
                cond.READY_REASON if infra_ready else cond.NOT_READY_REASON,
                "LocalMachine provisioned" if infra_ready else "waiting for LocalMachine",
            ),
            (
                NODE_READY,
                node_ready,
                cond.READY_REASON if node_ready else "NodeDoesNotExist",
                f"node {node_name} Ready" if node_ready else "waiting for the node",
            ),
            (
                cond.NODE_HEALTHY,
                node_ready,
                cond.HEALTHY_REASON if node_ready else "NodeDoesNotExist",
                f"node {node_name} healthy" if node_ready else "waiting for the node",
            ),
            (cond.READY, ready, cond.READY_REASON if ready else cond.NOT_READY_REASON, message),
            (
                AVAILABLE,
                ready,
                cond.AVAILABLE_REASON if ready else cond.NOT_AVAILABLE_REASON,
                "Ready" if ready else message,
            ),
            (cond.DELETING, False, cond.NOT_DELETING_REASON, ""),
        ]
        conditions, changed = merged_conditions(machine, wanted)
        status: dict[str, Any] = {
            "initialization": {
                "bootstrapDataSecretCreated": bootstrap_ready,
                "infrastructureProvisioned": infra_ready,
            },
            "phase": machine_phase(False, bootstrap_ready, infra_ready, node_name),
            "conditions": conditions,
        }
        addresses = dig(infra, "status", "addresses")
        if isinstance(addresses, list) and addresses:
            status["addresses"] = addresses
        if node_name:
            status["nodeRef"] = {"name": node_name}
        expiry = self._certificates_expiry(machine)
        if expiry:
            status["certificatesExpiryDate"] = expiry
        failure_domain = dig(machine, "spec", "failureDomain") or dig(
            infra, "status", "failureDomain"
        )
        if failure_domain:
            status["failureDomain"] = failure_domain
        current = dig(machine, "status") or {}
        if changed or any(current.get(k) != v for k, v in status.items() if k != "conditions"):
            self.state.kube.apply(
                groups.MACHINE,
                str(meta(machine)["namespace"]),
                str(meta(machine)["name"]),
                {"status": status},
                subresource="status",
            )

    def _certificates_expiry(self, machine: dict[str, Any]) -> str | None:
        """The machine's API server certificate expiry, as Cluster API reports it."""
        infra_name = str(dig(machine, "spec", "infrastructureRef", "name") or "")
        with self.state.lock:
            sim = self.state.machines.get((str(meta(machine).get("namespace")), infra_name))
        files = sim.apiserver.files if sim is not None and sim.apiserver is not None else None
        if files is None or files.apiserver_not_after is None:
            return None
        return cond.rfc3339(files.apiserver_not_after)

    @staticmethod
    def _readiness_gates(machine: dict[str, Any]) -> tuple[bool, str]:
        """Whether every condition in `spec.readinessGates` is as its polarity wants."""
        problems: list[str] = []
        for gate in dig(machine, "spec", "readinessGates") or []:
            condition_type = str(gate.get("conditionType"))
            negative = gate.get("polarity") == "Negative"
            condition = cond.get_condition(machine, condition_type)
            if condition is None or condition.get("status") is None:
                problems.append(f"{condition_type} not yet reported")
                continue
            status = condition.get("status")
            if (status == cond.TRUE) == negative:
                problems.append(f"{condition_type}: {condition.get('message') or status}")
        if problems:
            return False, "; ".join(problems)
        return True, ""

    def _delete(self, key: ObjectKey, machine: dict[str, Any]) -> Result:
        state = self.state
        hooks = sorted(
            name
            for name in (meta(machine).get("annotations") or {})
            if name.startswith(labels.PRE_TERMINATE_DELETE_HOOK_ANNOTATION_PREFIX)
        )
        message = f"waiting for pre-terminate hooks {', '.join(hooks)}" if hooks else "deleting"
        # Server-side apply drops owned fields left out: send everything owned, as it is.
        kept = [
            (
                str(c["type"]),
                str(c["status"]),
                str(c.get("reason") or "Unknown"),
                str(c.get("message") or ""),
            )
            for c in dig(machine, "status", "conditions") or []
            if c.get("type") in OWNED_CONDITIONS and c.get("type") != cond.DELETING
        ]
        conditions, changed = merged_conditions(
            machine, [*kept, (cond.DELETING, True, cond.DELETING_REASON, message)]
        )
        if changed or dig(machine, "status", "phase") != "Deleting":
            status = {
                k: v for k, v in (dig(machine, "status") or {}).items() if k in OWNED_STATUS_FIELDS
            }
            status.update(phase="Deleting", conditions=conditions)
            state.kube.apply(
                groups.MACHINE, key.namespace, key.name, {"status": status}, subresource="status"
            )
        if hooks:
            return Result()
        config_ref = dig(machine, "spec", "bootstrap", "configRef") or {}
        if config_ref.get("kind") == groups.KUBEADM_CONFIG.kind:
            config = state.caches.kubeadm_configs.get(key.namespace, str(config_ref.get("name")))
            secret = dig(config, "status", "dataSecretName")
            if secret:
                state.kube.delete(groups.SECRET, key.namespace, str(secret))
            state.kube.delete(groups.KUBEADM_CONFIG, key.namespace, str(config_ref.get("name")))
        infra_name = str(dig(machine, "spec", "infrastructureRef", "name"))
        if state.kube.get(groups.LOCAL_MACHINE, key.namespace, infra_name) is not None:
            state.kube.delete(groups.LOCAL_MACHINE, key.namespace, infra_name)
            return Result(requeue_after=1.0)
        node_name = dig(machine, "status", "nodeRef", "name")
        sim = state.sim_cluster_for(key.namespace, str(dig(machine, "spec", "clusterName")))
        if node_name and sim is not None and sim.lb is not None and sim.lb.healthy_backends():
            try:
                Kubelet(
                    sim.workload(), node_name=str(node_name), address="", provider_id="", version=""
                ).deregister()
            except (ApiError, OSError) as error:
                _log.warning("could not delete node", node=node_name, error=str(error))
        remove_finalizer(state.kube, groups.MACHINE, machine, MACHINE_FINALIZER)
        return Result()
