"""Dict fixtures: Cluster API v1beta2 objects as the API server returns them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels

NOW = datetime.now(UTC).replace(microsecond=0)
"""The tests' clock: real time, since the CAs a reconcile creates are valid from now."""
KCP_UID = "kcp-uid-1"
CLUSTER_UID = "cluster-uid-1"


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def kcp(
    name: str = "cp",
    *,
    namespace: str = "ns",
    replicas: int = 3,
    version: str = "v1.34.4",
    cluster: str | None = "c1",
    spec: dict[str, Any] | None = None,
    uid: str = KCP_UID,
    **metadata: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
        "kind": "KubeadmControlPlane",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "generation": 1,
            "resourceVersion": "10",
            "creationTimestamp": ts(NOW - timedelta(hours=1)),
            **metadata,
        },
        "spec": {
            "replicas": replicas,
            "version": version,
            "machineTemplate": {
                "spec": {
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "LocalMachineTemplate",
                        "name": "tmpl",
                    }
                }
            },
            "kubeadmConfigSpec": {
                "clusterConfiguration": {"apiServer": {"certSANs": ["localhost"]}},
                "initConfiguration": {"nodeRegistration": {"name": "x"}},
                "joinConfiguration": {"nodeRegistration": {"name": "x"}},
            },
        },
    }
    if cluster is not None:
        obj["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "cluster.x-k8s.io/v1beta2",
                "kind": "Cluster",
                "name": cluster,
                "uid": CLUSTER_UID,
            }
        ]
    if spec:
        obj["spec"].update(copy.deepcopy(spec))
    return obj


def cluster(
    name: str = "c1",
    *,
    namespace: str = "ns",
    endpoint: tuple[str, int] | None = ("127.0.0.1", 6443),
    provisioned: bool = True,
    failure_domains: list[str] | None = None,
    paused: bool = False,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": CLUSTER_UID,
            "resourceVersion": "5",
        },
        "spec": {
            "controlPlaneRef": {
                "apiGroup": "controlplane.cluster.x-k8s.io",
                "kind": "KubeadmControlPlane",
                "name": "cp",
            },
            "paused": paused,
        },
        "status": {
            "initialization": {"infrastructureProvisioned": provisioned},
            "failureDomains": [
                {"name": fd, "controlPlane": True} for fd in (failure_domains or [])
            ],
        },
    }
    if endpoint is not None:
        obj["spec"]["controlPlaneEndpoint"] = {"host": endpoint[0], "port": endpoint[1]}
    return obj


def machine(
    name: str,
    *,
    namespace: str = "ns",
    version: str = "v1.34.4",
    age: timedelta = timedelta(minutes=30),
    failure_domain: str | None = None,
    node: str | None = "same",
    deleting: bool = False,
    owner_uid: str = KCP_UID,
    address: str | None = "127.0.10.1",
    conditions: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    cluster_name: str = "c1",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Machine",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "20",
            "creationTimestamp": ts(NOW - age),
            "labels": labels.control_plane_machine_labels("cp", cluster_name),
            "annotations": {
                labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION: "tmpl",
                labels.TEMPLATE_CLONED_FROM_GROUPKIND_ANNOTATION: (
                    "LocalMachineTemplate.infrastructure.cluster.x-k8s.io"
                ),
                **(annotations or {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
                    "kind": "KubeadmControlPlane",
                    "name": "cp",
                    "uid": owner_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "clusterName": cluster_name,
            "version": version,
            "bootstrap": {
                "configRef": {
                    "apiGroup": "bootstrap.cluster.x-k8s.io",
                    "kind": "KubeadmConfig",
                    "name": name,
                }
            },
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "LocalMachine",
                "name": name,
            },
        },
        "status": {"conditions": conditions or []},
    }
    if failure_domain:
        obj["spec"]["failureDomain"] = failure_domain
    if node is not None:
        obj["status"]["nodeRef"] = {"name": name if node == "same" else node}
    if address is not None:
        obj["status"]["addresses"] = [{"type": "InternalIP", "address": address}]
    if deleting:
        obj["metadata"]["deletionTimestamp"] = ts(NOW)
    return obj


def condition(
    condition_type: str, status: str = c.TRUE, reason: str = "Ok", message: str = ""
) -> dict[str, Any]:
    return {
        "type": condition_type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": ts(NOW - timedelta(minutes=5)),
    }


def pod(component: str, node: str, *, phase: str = "Running", ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{component}-{node}",
            "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
        },
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
        },
    }


def node(name: str, *, ready: str = "True") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def as_cabpk_leaves_it(spec: dict[str, Any], *, endpoint: str = "127.0.0.1:6443") -> dict[str, Any]:
    """A KubeadmConfig spec after Cluster API's CABPK wrote its bootstrap data: the endpoint
    it filled in and, on a join, the discovery it generated (token and CA hashes)."""
    written = copy.deepcopy(spec)
    written.setdefault("clusterConfiguration", {}).setdefault("controlPlaneEndpoint", endpoint)
    join = written.get("joinConfiguration")
    if isinstance(join, dict):
        join.setdefault("controlPlane", {})
        join["discovery"] = {
            "bootstrapToken": {
                "apiServerEndpoint": endpoint,
                "token": "abcdef.0123456789abcdef",
                "caCertHashes": ["sha256:" + "0" * 64],
            }
        }
    return written
