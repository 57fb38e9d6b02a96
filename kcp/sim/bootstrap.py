"""The small part of the kubeadm bootstrap provider kcp relies on, played locally.

A KubeadmConfig gets its bootstrap data Secret (what `cloud-init` would run:
`kubeadm init` or `kubeadm join --control-plane` against the cluster's
endpoint) once the cluster's infrastructure is provisioned; a join
configuration waits, as in Cluster API, until the control plane is initialized.
The Secret's content is descriptive only: the simulator's LocalMachine
controller does the work of the commands it names.
"""

from __future__ import annotations

import base64
from typing import Any

from kcp.api import conditions as cond
from kcp.api import groups, labels
from kcp.runtime import ObjectKey, Result
from kcp.sim.objects import dig, merged_conditions, meta, owner_name
from kcp.sim.state import SimState

__all__ = ["DATA_SECRET_AVAILABLE", "KubeadmConfigReconciler", "bootstrap_script"]

DATA_SECRET_AVAILABLE = "DataSecretAvailable"
WAIT = 2.0


def bootstrap_script(config: dict[str, Any], endpoint: str) -> str:
    """A cloud-config naming the kubeadm command this node would run."""
    join = _is_join(config)
    command = "kubeadm join --control-plane" if join else "kubeadm init"
    return (
        "## template: jinja\n#cloud-config\n"
        f"# simulated by kcp sim: {command} against {endpoint or 'the control-plane endpoint'}\n"
        "runcmd:\n"
        f"  - '{command} --config /run/kubeadm/kubeadm.yaml'\n"
    )


def _is_join(config: dict[str, Any]) -> bool:
    spec = config.get("spec") or {}
    return bool(spec.get("joinConfiguration")) and not spec.get("initConfiguration")


class KubeadmConfigReconciler:
    """Bootstrap data for one KubeadmConfig."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def __call__(self, key: ObjectKey) -> Result:
        state = self.state
        config = state.caches.kubeadm_configs.get(key.namespace, key.name)
        if config is None or meta(config).get("deletionTimestamp"):
            return Result()
        if dig(config, "status", "initialization", "dataSecretCreated") is True and dig(
            config, "status", "dataSecretName"
        ):
            return Result()
        cluster_name = (meta(config).get("labels") or {}).get(labels.CLUSTER_NAME_LABEL)
        if not cluster_name:
            machine_name = owner_name(config, groups.MACHINE.kind, groups.CLUSTER_GROUP)
            machine = state.caches.machines.get(key.namespace, machine_name or "")
            cluster_name = dig(machine, "spec", "clusterName")
        cluster = state.caches.clusters.get(key.namespace, str(cluster_name or ""))
        if cluster is None:
            return self._waiting(config, "WaitingForCluster", "no Cluster found for it yet")
        if dig(cluster, "status", "initialization", "infrastructureProvisioned") is not True:
            return self._waiting(
                config, "WaitingForClusterInfrastructure", "cluster infrastructure not provisioned"
            )
        if _is_join(config) and (
            dig(cluster, "status", "initialization", "controlPlaneInitialized") is not True
        ):
            return self._waiting(
                config, "WaitingForControlPlaneInitialized", "control plane not initialized yet"
            )
        endpoint = dig(cluster, "spec", "controlPlaneEndpoint") or {}
        script = bootstrap_script(config, f"{endpoint.get('host', '')}:{endpoint.get('port', '')}")
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": labels.CLUSTER_SECRET_TYPE,
            "metadata": {
                "name": key.name,
                "namespace": key.namespace,
                "labels": {labels.CLUSTER_NAME_LABEL: str(cluster_name)},
                "ownerReferences": [
                    {
                        "apiVersion": groups.KUBEADM_CONFIG.api_version,
                        "kind": groups.KUBEADM_CONFIG.kind,
                        "name": key.name,
                        "uid": meta(config).get("uid"),
                        "controller": True,
                    }
                ],
            },
            "data": {
                "value": base64.b64encode(script.encode()).decode(),
                "format": base64.b64encode(b"cloud-config").decode(),
            },
        }
        state.kube.create(groups.SECRET, key.namespace, secret)
        conditions, _ = merged_conditions(
            config,
            [
                (DATA_SECRET_AVAILABLE, True, cond.AVAILABLE_REASON, ""),
                (cond.READY, True, cond.READY_REASON, ""),
            ],
        )
        state.kube.apply(
            groups.KUBEADM_CONFIG,
            key.namespace,
            key.name,
            {
                "status": {
                    "initialization": {"dataSecretCreated": True},
                    "dataSecretName": key.name,
                    "conditions": conditions,
                }
            },
            subresource="status",
        )
        machine_name = owner_name(config, groups.MACHINE.kind, groups.CLUSTER_GROUP)
        if machine_name:
            state.wake("machine", key.namespace, machine_name)
        return Result()

    def _waiting(self, config: dict[str, Any], reason: str, message: str) -> Result:
        conditions, changed = merged_conditions(
            config,
            [
                (DATA_SECRET_AVAILABLE, False, reason, message),
                (cond.READY, False, reason, message),
            ],
        )
        if changed:
            self.state.kube.apply(
                groups.KUBEADM_CONFIG,
                str(meta(config)["namespace"]),
                str(meta(config)["name"]),
                {"status": {"conditions": conditions}},
                subresource="status",
            )
        return Result(requeue_after=WAIT)
