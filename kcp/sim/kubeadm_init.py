"""What `kubeadm init` creates in a new cluster besides the Node and its static pods.

The `kubeadm-config` ConfigMap (the ClusterConfiguration, defaulted as kubeadm
stores it), `kubelet-config`, `cluster-info` in `kube-public` (the CA and
endpoint joining nodes discover), the RBAC that lets bootstrap tokens join and
read those, and any bootstrap tokens the InitConfiguration lists. Pure
functions: `kcp.sim.workload.publish` creates what `init_objects` returns.
Names follow kubeadm v1.34.
"""

from __future__ import annotations

import base64
import ipaddress
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from kcp.api.groups import CONFIG_MAP, SECRET
from kcp.rest import Resource
from kcp.sim.bootdata import DEFAULT_CERTIFICATES_DIR

__all__ = [
    "CLUSTER_ROLE",
    "CLUSTER_ROLE_BINDING",
    "NODE_BOOTSTRAP_TOKEN_GROUP",
    "ROLE",
    "ROLE_BINDING",
    "WorkloadObject",
    "cluster_configuration_to_upload",
    "cluster_info_kubeconfig",
    "dns_ip",
    "init_objects",
    "kubelet_configuration",
]

ROLE = Resource("rbac.authorization.k8s.io", "v1", "Role", "roles")
ROLE_BINDING = Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")
CLUSTER_ROLE = Resource(
    "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False
)
CLUSTER_ROLE_BINDING = Resource(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    namespaced=False,
)

NODE_BOOTSTRAP_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
NODES_GROUP = "system:nodes"
KUBE_SYSTEM = "kube-system"
KUBE_PUBLIC = "kube-public"
_DEFAULT_SERVICE_SUBNET = "10.96.0.0/12"
_DEFAULT_DNS_DOMAIN = "cluster.local"


WorkloadObject = tuple[Resource, str | None, dict[str, Any]]
"""(kind, namespace or None, object) to create in the workload cluster."""


def dns_ip(service_cidr: str) -> str:
    """The cluster DNS Service's address: the 10th of the service range, as kubeadm picks it."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    return str(network.network_address + 10)


def cluster_configuration_to_upload(
    cluster_configuration: Mapping[str, Any] | None,
    *,
    version: str,
    endpoint: str,
) -> dict[str, Any]:
    """The ClusterConfiguration as `kubeadm init` stores it in `kubeadm-config`: defaulted.

    `version` is the machine's Kubernetes version; `endpoint` (`host:port`) is
    used when the document names no `controlPlaneEndpoint`.
    """
    config: dict[str, Any] = {
        k: v for k, v in dict(cluster_configuration or {}).items() if v is not None
    }
    api_version = str(config.get("apiVersion") or "kubeadm.k8s.io/v1beta4")
    config["apiVersion"] = api_version
    config["kind"] = "ClusterConfiguration"
    config["kubernetesVersion"] = version
    _default(config, "controlPlaneEndpoint", endpoint)
    _default(config, "certificatesDir", DEFAULT_CERTIFICATES_DIR)
    _default(config, "clusterName", "kubernetes")
    _default(config, "imageRepository", "registry.k8s.io")
    for section in ("apiServer", "controllerManager", "scheduler", "dns", "proxy"):
        config[section] = dict(_mapping(config.get(section)))
    networking = dict(_mapping(config.get("networking")))
    _default(networking, "serviceSubnet", _DEFAULT_SERVICE_SUBNET)
    _default(networking, "dnsDomain", _DEFAULT_DNS_DOMAIN)
    config["networking"] = networking
    etcd = dict(_mapping(config.get("etcd")))
    if not etcd.get("external"):
        local = dict(_mapping(etcd.get("local")))
        _default(local, "dataDir", "/var/lib/etcd")
        etcd["local"] = local
    config["etcd"] = etcd
    if api_version.endswith("/v1beta4"):
        _default(config, "encryptionAlgorithm", "RSA-2048")
        _default(config, "certificateValidityPeriod", "8760h0m0s")
        _default(config, "caCertificateValidityPeriod", "87600h0m0s")
    return config


def _default(obj: dict[str, Any], key: str, value: str) -> None:
    """kubeadm's defaulting: an absent or empty field gets `value` (CABPK writes `dataDir: ""`)."""
    if not obj.get(key):
        obj[key] = value


def kubelet_configuration(
    *,
    service_cidr: str,
    dns_domain: str,
    certificates_dir: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The cluster-wide KubeletConfiguration kubeadm stores in `kubelet-config`."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "0s", "enabled": True},
            "x509": {"clientCAFile": posixpath.join(certificates_dir, "ca.crt")},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"},
        },
        "cgroupDriver": "systemd",
        "clusterDNS": [dns_ip(service_cidr)],
        "clusterDomain": dns_domain,
        "containerRuntimeEndpoint": "",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "rotateCertificates": True,
        "staticPodPath": "/etc/kubernetes/manifests",
    }
    for key, value in (overrides or {}).items():
        config[key] = value
    return config


def cluster_info_kubeconfig(ca_pem: bytes, server: str) -> str:
    """The kubeconfig in `kube-public/cluster-info`: the cluster's CA and endpoint, no user."""
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    "server": server,
                },
                "name": "",
            }
        ],
        "contexts": None,
        "current-context": "",
        "kind": "Config",
        "preferences": {},
        "users": None,
    }
    return _yaml(document)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _yaml(document: Mapping[str, Any]) -> str:
    return str(yaml.safe_dump(dict(document), default_flow_style=False, sort_keys=True))


def init_objects(
    *,
    cluster_configuration: Mapping[str, Any],
    kubelet_config: Mapping[str, Any],
    cluster_info: str,
    bootstrap_tokens: Sequence[Mapping[str, Any]] = (),
) -> list[WorkloadObject]:
    """Everything `kubeadm init` creates in the new cluster besides the Node and static pods."""
    objects: list[WorkloadObject] = [
        _config_map(
            KUBE_SYSTEM, "kubeadm-config", {"ClusterConfiguration": _yaml(cluster_configuration)}
        ),
        _config_map(KUBE_SYSTEM, "kubelet-config", {"kubelet": _yaml(kubelet_config)}),
        _config_map(KUBE_PUBLIC, "cluster-info", {"kubeconfig": cluster_info}),
    ]
    objects += _role(
        KUBE_SYSTEM,
        "kubeadm:nodes-kubeadm-config",
        _get_config_map("kubeadm-config"),
        [_group(NODE_BOOTSTRAP_TOKEN_GROUP), _group(NODES_GROUP)],
    )
    objects += _role(
        KUBE_SYSTEM,
        "kubeadm:kubelet-config",
        _get_config_map("kubelet-config"),
        [_group(NODES_GROUP), _group(NODE_BOOTSTRAP_TOKEN_GROUP)],
    )
    objects += _role(
        KUBE_PUBLIC,
        "kubeadm:bootstrap-signer-clusterinfo",
        _get_config_map("cluster-info"),
        [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous"}],
    )
    objects.append(
        _cluster_role(
            "kubeadm:get-nodes", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
        )
    )
    for name, role, group in (
        ("kubeadm:get-nodes", "kubeadm:get-nodes", NODE_BOOTSTRAP_TOKEN_GROUP),
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", NODE_BOOTSTRAP_TOKEN_GROUP),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            NODE_BOOTSTRAP_TOKEN_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            NODES_GROUP,
        ),
        ("kubeadm:cluster-admins", "cluster-admin", "kubeadm:cluster-admins"),
    ):
        objects.append(_cluster_role_binding(name, role, [_group(group)]))
    objects += [_token_secret(token) for token in bootstrap_tokens if token.get("token")]
    return objects


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def _config_map(namespace: str, name: str, data: Mapping[str, str]) -> WorkloadObject:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace),
        "data": dict(data),
    }
    return CONFIG_MAP, namespace, body


def _get_config_map(name: str) -> list[dict[str, Any]]:
    return [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name], "verbs": ["get"]}
    ]


def _group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def _role(
    namespace: str, name: str, rules: list[dict[str, Any]], subjects: list[dict[str, str]]
) -> list[WorkloadObject]:
    role = {
        "apiVersion": ROLE.api_version,
        "kind": ROLE.kind,
        "metadata": _meta(name, namespace),
        "rules": rules,
    }
    binding = {
        "apiVersion": ROLE_BINDING.api_version,
        "kind": ROLE_BINDING.kind,
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": subjects,
    }
    return [(ROLE, namespace, role), (ROLE_BINDING, namespace, binding)]


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> WorkloadObject:
    body = {
        "apiVersion": CLUSTER_ROLE.api_version,
        "kind": CLUSTER_ROLE.kind,
        "metadata": _meta(name, None),
        "rules": rules,
    }
    return CLUSTER_ROLE, None, body


def _cluster_role_binding(name: str, role: str, subjects: list[dict[str, str]]) -> WorkloadObject:
    body = {
        "apiVersion": CLUSTER_ROLE_BINDING.api_version,
        "kind": CLUSTER_ROLE_BINDING.kind,
        "metadata": _meta(name, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }
    return CLUSTER_ROLE_BINDING, None, body


def _token_secret(token: Mapping[str, Any]) -> WorkloadObject:
    """An `InitConfiguration.bootstrapTokens` entry as the Secret the token authenticator reads."""
    token_id, _, secret = str(token["token"]).partition(".")
    usages = token.get("usages") or ["signing", "authentication"]
    groups = token.get("groups") or [NODE_BOOTSTRAP_TOKEN_GROUP]
    string_data = {
        "token-id": token_id,
        "token-secret": secret,
        "auth-extra-groups": ",".join(str(g) for g in groups),
    }
    for usage in usages:
        string_data[f"usage-bootstrap-{usage}"] = "true"
    if token.get("description"):
        string_data["description"] = str(token["description"])
    if token.get("expires"):
        string_data["expiration"] = str(token["expires"])
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": _meta(f"bootstrap-token-{token_id}", KUBE_SYSTEM),
        "stringData": string_data,
    }
    return SECRET, KUBE_SYSTEM, body
