"""The cheap workload side the real reconciler (`kcp run`) needs for a steady cluster.

Every benchmark cluster gets a workload cluster that is healthy and costs
nothing to run: the management kube-apiserver plays every cluster's workload
API server (each cluster's `-kubeconfig` Secret is an admin kubeconfig for it,
and its `-ca` Secret the management CA), and it holds what a kubelet would
report — one Node named after the shared etcd's member, its kubelet endpoint
served by `kcp.bench.kubelet` (so port-forwards to its Pods work), and the four
control-plane static Pods on it, Running and Ready, the etcd Pod advertising
the shared etcd's client URL, and the `kubeadm-config` ConfigMap `kubeadm init`
uploads (without it kcp counts a cluster as not initialized, as Cluster API's KCP
does, and checks it again every 10 s). Each cluster's one Machine points at that Node,
so the reconciler sees one healthy, up-to-date control-plane Machine with a
healthy etcd member and has nothing to do but inspect and report.

What Cluster API's own KCP needs on top, so that both controllers see identical
work: the Node labelled and tainted as kubeadm does (it lists control-plane Nodes
by `node-role.kubernetes.io/control-plane`), a `spec.providerID` on each Machine
(without one its Available condition ignores the Machine) and the Machine
conditions Cluster API's core would write (`Ready`, `Available`: it counts
replicas by them). `for_environment(..., user=...)` gives the kubeconfig Secret
a client certificate of its own instead of the admin's, so the audit log tells a
controller's workload requests apart from its management ones.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kcp.api import groups, labels
from kcp.rest import Resource

__all__ = ["SteadyWorkload"]

KUBE_SYSTEM = "kube-system"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
KUBELET_PORT = 10250
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"
MACHINE_CONDITIONS = (
    "BootstrapConfigReady",
    "InfrastructureReady",
    "NodeReady",
    "NodeHealthy",
    "Ready",
    "Available",
)
"""The Machine conditions Cluster API's core controller would set True on a healthy Machine."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(condition_type: str) -> dict[str, Any]:
    return {
        "type": condition_type,
        "status": "True",
        "reason": condition_type,
        "message": "",
        "lastTransitionTime": _now(),
    }


@dataclass
class SteadyWorkload:
    """Shared workload-side objects and the per-cluster Secret data and Machine."""

    kube: Any
    """`kcp.rest.Kube` of the management cluster."""
    pki_dir: Path
    """The management cluster's PKI directory (its CA signs the admin kubeconfig)."""
    kubeconfig: bytes
    """Admin kubeconfig of the management API server."""
    server_host: str
    server_port: int
    node_name: str
    """The shared etcd member's name: etcd health matches members to Nodes by name."""
    node_address: str
    """The Node's and every Machine's InternalIP: the shared etcd's own loopback address."""
    etcd_client_url: str
    secret_data: dict[str, dict[str, bytes]] = field(default_factory=dict)

    @classmethod
    def for_environment(cls, env: Any, etcd: Any, *, user: str | None = None) -> SteadyWorkload:
        """The workload side of `env` for `etcd`'s Node; with `user`, the clusters'
        kubeconfig authenticates as that user (in `system:masters`) instead of the admin."""
        from kcp.rest import Kube

        member = etcd.cluster.members[0]
        pki_dir = Path(env.plane.work_dir) / "pki"
        return cls(
            kube=Kube(env.api_client(), field_manager="kcp-bench"),
            pki_dir=pki_dir,
            kubeconfig=(
                Path(env.plane.kubeconfig_path).read_bytes()
                if user is None
                else user_kubeconfig(pki_dir, env.plane.server_url, user)
            ),
            server_host="127.0.0.1",
            server_port=int(env.plane.apiserver_port),
            node_name=member.name,
            node_address=member.host,
            etcd_client_url=member.client_url,
        )

    def prepare(self, etcd_ca: Any) -> None:
        """Create the Node and control-plane Pods (once) and the Secret data every cluster gets."""
        from kcp.certs import (
            key_pair_to_secret_data,
            kubeconfig_secret_data,
            new_certificate_authority,
            new_service_account_key,
        )

        public, private = new_service_account_key("ecdsa-p256")
        proxy = new_certificate_authority("front-proxy-ca", algorithm="ecdsa-p256")
        self.secret_data = {
            "ca": {
                "tls.crt": (self.pki_dir / "ca.crt").read_bytes(),
                "tls.key": (self.pki_dir / "ca.key").read_bytes(),
            },
            "etcd": key_pair_to_secret_data(etcd_ca),
            "sa": {"tls.crt": public, "tls.key": private},
            "proxy": key_pair_to_secret_data(proxy),
            "kubeconfig": kubeconfig_secret_data(self.kubeconfig),
        }
        self._create_node()
        self._create_pods()
        self._create_kubeadm_config()

    def _create(self, resource: Any, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        """Create `obj`, or bring an existing one's labels and annotations to `obj`'s."""
        from kcp.rest import ApiError

        try:
            created: dict[str, Any] = self.kube.create(resource, namespace, obj)
            return created
        except ApiError as error:
            if error.status != 409:
                raise
        metadata = obj["metadata"]
        patch = {k: metadata[k] for k in ("labels", "annotations") if k in metadata}
        found: dict[str, Any] = self.kube.merge_patch(
            resource, namespace, metadata["name"], {"metadata": patch}
        )
        return found

    def remove(self) -> None:
        """Delete the Node and its Pods (a later fleet's controller must not find them)."""
        from kcp.rest import ApiError

        for component in COMPONENTS:  # no kubelet confirms: at once, as the Pod GC does
            with contextlib.suppress(ApiError):
                self.kube.delete(
                    groups.POD, KUBE_SYSTEM, f"{component}-{self.node_name}", grace_period_seconds=0
                )
        with contextlib.suppress(ApiError):
            self.kube.delete(groups.NODE, None, self.node_name)

    def _create_node(self) -> None:
        self._create(
            groups.NODE,
            None,
            {
                "apiVersion": "v1",
                "kind": "Node",
                # As kubeadm registers a control-plane Node.
                "metadata": {"name": self.node_name, "labels": {CONTROL_PLANE_ROLE: ""}},
                "spec": {"taints": [{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}]},
            },
        )
        self.kube.merge_patch(
            groups.NODE,
            None,
            self.node_name,
            {
                "status": {
                    "conditions": [
                        {**_condition("Ready"), "lastHeartbeatTime": _now(), "reason": "Ready"}
                    ],
                    "addresses": [{"type": "InternalIP", "address": self.node_address}],
                    # Where the API server proxies port-forwards to this Node's Pods
                    # (`kcp.bench.kubelet` serves it).
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
                }
            },
            subresource="status",
        )

    def _create_kubeadm_config(self) -> None:
        """What `kubeadm init` uploads once the first API server runs (one for every
        cluster: they share this API server)."""
        import yaml

        from kcp.bench.fleet import KUBERNETES_VERSION
        from kcp.sim.kubeadm_init import cluster_configuration_to_upload

        document = cluster_configuration_to_upload(
            None,
            version=KUBERNETES_VERSION,
            endpoint=f"{self.server_host}:{self.server_port}",
        )
        self._create(
            groups.CONFIG_MAP,
            KUBE_SYSTEM,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kubeadm-config", "namespace": KUBE_SYSTEM},
                "data": {"ClusterConfiguration": yaml.safe_dump(document, sort_keys=True)},
            },
        )

    def _create_pods(self) -> None:
        from kcp.rest import ApiError

        with contextlib.suppress(ApiError):  # the admission plugin wants the namespace's SA
            self.kube.create(
                Resource("", "v1", "ServiceAccount", "serviceaccounts"),
                KUBE_SYSTEM,
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
            )
        for component in COMPONENTS:
            name = f"{component}-{self.node_name}"
            annotations = (
                {ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION: self.etcd_client_url}
                if component == "etcd"
                else {}
            )
            self._create(
                groups.POD,
                KUBE_SYSTEM,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "labels": {"tier": "control-plane", "component": component},
                        "annotations": annotations,
                    },
                    "spec": {
                        "nodeName": self.node_name,
                        "automountServiceAccountToken": False,
                        "containers": [{"name": component, "image": PAUSE_IMAGE}],
                    },
                },
            )
            self.kube.merge_patch(
                groups.POD,
                KUBE_SYSTEM,
                name,
                {
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": t, "status": "True", "lastTransitionTime": _now()}
                            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                        ],
                    }
                },
                subresource="status",
            )

    # -- per cluster -------------------------------------------------------------------

    def cluster_patch(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(spec additions, status) that make a Cluster provisioned with an endpoint."""
        spec = {"controlPlaneEndpoint": {"host": self.server_host, "port": self.server_port}}
        status = {"initialization": {"infrastructureProvisioned": True}}
        return spec, status

    def machine(self, cluster: str, kcp: dict[str, Any], version: str) -> dict[str, Any]:
        """The cluster's one control-plane Machine, controlled by its KubeadmControlPlane."""
        metadata = kcp["metadata"]
        return {
            "apiVersion": groups.MACHINE.api_version,
            "kind": "Machine",
            "metadata": {
                "name": f"{cluster}-cp-0",
                "labels": {
                    labels.CLUSTER_NAME_LABEL: cluster,
                    labels.MACHINE_CONTROL_PLANE_LABEL: "",
                    labels.MACHINE_CONTROL_PLANE_NAME_LABEL: metadata["name"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": kcp["apiVersion"],
                        "kind": kcp["kind"],
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "clusterName": cluster,
                "version": version,
                "providerID": f"kcp-bench://{cluster}-cp-0",
                "bootstrap": {"dataSecretName": f"{cluster}-cp-0-bootstrap"},
                "infrastructureRef": {
                    "apiGroup": groups.INFRASTRUCTURE_GROUP,
                    "kind": "LocalMachine",
                    "name": f"{cluster}-cp-0",
                },
            },
        }

    def infra_machine(self, cluster: str, machine: dict[str, Any]) -> dict[str, Any]:
        """The Machine's LocalMachine as KCP clones it from the cluster's template (the
        cloned-from annotations say which), owned by the Machine as Cluster API's core sets."""
        metadata = machine["metadata"]
        return {
            "apiVersion": groups.LOCAL_MACHINE.api_version,
            "kind": "LocalMachine",
            "metadata": {
                "name": metadata["name"],
                "labels": dict(metadata.get("labels") or {}),
                "annotations": {
                    labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION: cluster,
                    labels.TEMPLATE_CLONED_FROM_GROUPKIND_ANNOTATION: (
                        f"LocalMachineTemplate.{groups.INFRASTRUCTURE_GROUP}"
                    ),
                },
                "ownerReferences": [
                    {
                        "apiVersion": machine["apiVersion"],
                        "kind": "Machine",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"providerID": machine["spec"]["providerID"]},
        }

    def machine_status(self) -> dict[str, Any]:
        """What Cluster API's core and an infrastructure provider report for a running
        Machine (neither runs on this fleet)."""
        return {
            "conditions": [_condition(kind) for kind in MACHINE_CONDITIONS],
            "nodeRef": {"name": self.node_name},
            "addresses": [{"type": "InternalIP", "address": self.node_address}],
            "phase": "Running",
            "initialization": {
                "infrastructureProvisioned": True,
                "bootstrapDataSecretCreated": True,
            },
        }


def user_kubeconfig(pki_dir: Path, server: str, user: str) -> bytes:
    """A kubeconfig (bytes, never written to disk) for client-certificate user `user` in
    `system:masters`, signed by the management CA in `pki_dir`."""
    from kcp import certs

    ca = certs.load_key_pair(
        (pki_dir / "ca.crt").read_bytes(), (pki_dir / "ca.key").read_bytes(), require_ca=True
    )
    pair = certs.issue_certificate(
        ca, common_name=user, organizations=("system:masters",), algorithm="ecdsa-p256"
    )
    return certs.build_kubeconfig(
        cluster_name="kcp-bench-workload",
        server=server,
        ca_pem=ca.cert_pem,
        client_cert_pem=pair.cert_pem,
        client_key_pem=pair.key_pem,
        user_name=user,
    )
