"""The objects kcp and Cluster API would create for a cluster, for tests and demos of the simulator.

Until the reconciler exists, a test stands in for it: `ClusterMaterial.new()`
makes the cluster's CAs and service-account key (Cluster API's Secret formats),
`cluster_objects()` the Cluster, its LocalCluster and the Secrets, and
`machine_objects()` one control-plane Machine with the KubeadmConfig and
LocalMachine kcp would create next to it. `admin` is a `system:masters`
certificate the cluster CA signed, for talking to the workload API server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kcp import certs
from kcp.api import groups, labels
from kcp.certs import KeyAlgorithm, KeyPair, SecretPurpose

__all__ = [
    "ClusterMaterial",
    "cluster_objects",
    "kubeconfig_secret",
    "machine_objects",
    "secret_object",
]

DEFAULT_VERSION = "v1.34.4"


@dataclass(frozen=True)
class ClusterMaterial:
    """A cluster's certificate authorities and keys, as kcp would generate them."""

    ca: KeyPair = field(repr=False)
    etcd_ca: KeyPair = field(repr=False)
    proxy_ca: KeyPair = field(repr=False)
    sa_key_data: dict[str, bytes] = field(repr=False)
    admin: KeyPair = field(repr=False)

    @classmethod
    def new(cls, algorithm: KeyAlgorithm = "ecdsa-p256") -> ClusterMaterial:
        ca = certs.new_certificate_authority("kubernetes", algorithm=algorithm)
        sa_public, sa_private = certs.new_service_account_key(algorithm)
        return cls(
            ca=ca,
            etcd_ca=certs.new_certificate_authority("etcd-ca", algorithm=algorithm),
            proxy_ca=certs.new_certificate_authority("front-proxy-ca", algorithm=algorithm),
            sa_key_data={certs.TLS_CERT_KEY: sa_public, certs.TLS_KEY_KEY: sa_private},
            admin=certs.issue_certificate(
                ca,
                common_name="kubernetes-admin",
                organizations=("system:masters",),
                algorithm=algorithm,
            ),
        )


def secret_object(
    namespace: str, cluster: str, purpose: SecretPurpose, data: dict[str, bytes]
) -> dict[str, Any]:
    """A Cluster API certificate Secret (`<cluster>-<purpose>`, type `cluster.x-k8s.io/secret`)."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": certs.CLUSTER_SECRET_TYPE,
        "metadata": {
            "name": certs.secret_name(cluster, purpose),
            "namespace": namespace,
            "labels": {labels.CLUSTER_NAME_LABEL: cluster},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def cluster_objects(
    namespace: str,
    name: str,
    material: ClusterMaterial,
    *,
    service_cidr: str = "10.128.0.0/12",
    control_plane_name: str | None = None,
) -> list[dict[str, Any]]:
    """The Secrets, the LocalCluster and the Cluster of one simulated cluster, in creation order."""
    secrets = [
        secret_object(
            namespace, name, SecretPurpose.CLUSTER_CA, certs.key_pair_to_secret_data(material.ca)
        ),
        secret_object(
            namespace, name, SecretPurpose.ETCD, certs.key_pair_to_secret_data(material.etcd_ca)
        ),
        secret_object(
            namespace,
            name,
            SecretPurpose.FRONT_PROXY,
            certs.key_pair_to_secret_data(material.proxy_ca),
        ),
        secret_object(namespace, name, SecretPurpose.SERVICE_ACCOUNT, material.sa_key_data),
    ]
    local_cluster = {
        "apiVersion": groups.LOCAL_CLUSTER.api_version,
        "kind": groups.LOCAL_CLUSTER.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }
    cluster = {
        "apiVersion": groups.CLUSTER.api_version,
        "kind": groups.CLUSTER.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterNetwork": {"services": {"cidrBlocks": [service_cidr]}},
            "infrastructureRef": {
                "apiGroup": groups.INFRASTRUCTURE_GROUP,
                "kind": groups.LOCAL_CLUSTER.kind,
                "name": name,
            },
            "controlPlaneRef": {
                "apiGroup": groups.CONTROLPLANE_GROUP,
                "kind": groups.KUBEADM_CONTROL_PLANE.kind,
                "name": control_plane_name or f"{name}-control-plane",
            },
        },
    }
    return [*secrets, local_cluster, cluster]


def kubeconfig_secret(
    namespace: str, cluster: str, material: ClusterMaterial, endpoint: tuple[str, int]
) -> dict[str, Any]:
    """The `<cluster>-kubeconfig` Secret kcp writes once the endpoint is known: Cluster API
    core and CABPK reach the workload cluster through it."""
    host, port = endpoint
    document = certs.build_kubeconfig(
        cluster_name=cluster,
        server=f"https://{host}:{port}",
        ca_pem=material.ca.cert_pem,
        client_cert_pem=material.admin.cert_pem,
        client_key_pem=material.admin.key_pem,
    )
    return secret_object(
        namespace, cluster, SecretPurpose.KUBECONFIG, certs.kubeconfig_secret_data(document)
    )


def machine_objects(
    namespace: str,
    cluster: str,
    name: str,
    *,
    init: bool,
    version: str = DEFAULT_VERSION,
    control_plane_name: str | None = None,
    failure_domain: str | None = None,
) -> list[dict[str, Any]]:
    """A KubeadmConfig (init or join), a LocalMachine and the Machine naming both, as kcp would."""
    kcp_name = control_plane_name or f"{cluster}-control-plane"
    machine_labels = labels.control_plane_machine_labels(kcp_name, cluster)
    # Shaped as kcp creates them (Cluster API's CRD refuses empty objects): the first
    # machine runs `kubeadm init`, the others join as control-plane nodes.
    config_spec: dict[str, Any] = (
        {"clusterConfiguration": {"apiServer": {"certSANs": ["localhost", "127.0.0.1"]}}}
        if init
        else {"joinConfiguration": {"controlPlane": {}}}
    )
    config = {
        "apiVersion": groups.KUBEADM_CONFIG.api_version,
        "kind": groups.KUBEADM_CONFIG.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(machine_labels)},
        "spec": config_spec,
    }
    local_machine = {
        "apiVersion": groups.LOCAL_MACHINE.api_version,
        "kind": groups.LOCAL_MACHINE.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(machine_labels)},
        "spec": {"failureDomain": failure_domain} if failure_domain else {},
    }
    machine_spec: dict[str, Any] = {
        "clusterName": cluster,
        "version": version,
        "bootstrap": {
            "configRef": {
                "apiGroup": groups.BOOTSTRAP_GROUP,
                "kind": groups.KUBEADM_CONFIG.kind,
                "name": name,
            }
        },
        "infrastructureRef": {
            "apiGroup": groups.INFRASTRUCTURE_GROUP,
            "kind": groups.LOCAL_MACHINE.kind,
            "name": name,
        },
    }
    if failure_domain:
        machine_spec["failureDomain"] = failure_domain
    machine = {
        "apiVersion": groups.MACHINE.api_version,
        "kind": groups.MACHINE.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(machine_labels)},
        "spec": machine_spec,
    }
    return [config, local_machine, machine]
