"""What `kubeadm init`'s addon phase installs: CoreDNS and kube-proxy, with their RBAC.

In kube-system: the `coredns` ConfigMap (kubeadm's Corefile), Deployment,
ServiceAccount and the `kube-dns` Service (the 10th address of the service
range), the `system:coredns` ClusterRole and binding; the `kube-proxy`
ConfigMap (its configuration and kubeconfig), DaemonSet and ServiceAccount,
the `kubeadm:node-proxier` binding and the Role that lets joining nodes read
the ConfigMap. No kubelet runs containers here, so no Pod ever starts: the
objects are what Cluster API's KCP reads and updates.

The images are kubeadm's: `<imageRepository>/kube-proxy:<kubernetesVersion>`
and CoreDNS at `dns.imageTag` or the version kubeadm pins for the Kubernetes
minor (`registry.k8s.io/coredns/coredns` under the default repository).
`skipPhases` (`addon`, `addon/coredns`, `addon/kube-proxy`) and v1beta4's
`dns.disabled` / `proxy.disabled` leave an add-on out, as kubeadm does.
Pure functions; the node agent creates what `addon_objects` returns once and
never overwrites it (kubeadm's addon phase runs on init only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from kcp.api.groups import CONFIG_MAP
from kcp.rest import Resource
from kcp.sim.kubeadm_init import (
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    NODE_BOOTSTRAP_TOKEN_GROUP,
    ROLE,
    ROLE_BINDING,
    WorkloadObject,
    dns_ip,
)

__all__ = [
    "DAEMON_SET",
    "DEPLOYMENT",
    "SERVICE",
    "SERVICE_ACCOUNT",
    "addon_objects",
    "coredns_image",
    "coredns_version",
    "kube_proxy_image",
]

DEPLOYMENT = Resource("apps", "v1", "Deployment", "deployments")
DAEMON_SET = Resource("apps", "v1", "DaemonSet", "daemonsets")
SERVICE = Resource("", "v1", "Service", "services")
SERVICE_ACCOUNT = Resource("", "v1", "ServiceAccount", "serviceaccounts")

KUBE_SYSTEM = "kube-system"
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"
COREDNS_VERSIONS = {
    (1, 31): "v1.11.3",
    (1, 32): "v1.11.3",
    (1, 33): "v1.12.0",
    (1, 34): "v1.12.1",
    (1, 35): "v1.13.1",
}
"""The CoreDNS kubeadm pins per Kubernetes minor (1.34's read from kubeadm's own constants)."""
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")
_NOT_IN_TAG = re.compile(r"[^-a-zA-Z0-9_.]")
_CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"
_RBAC = "rbac.authorization.k8s.io"


def coredns_version(kubernetes_version: str) -> str:
    """The CoreDNS version kubeadm installs with `kubernetes_version` (the nearest known minor)."""
    match = _VERSION.match(kubernetes_version.strip())
    known = sorted(COREDNS_VERSIONS)
    if match is None:
        return COREDNS_VERSIONS[known[-1]]
    minor = (int(match.group(1)), int(match.group(2)))
    nearest = min(known, key=lambda k: (abs(k[0] - minor[0]) * 100 + abs(k[1] - minor[1]), k))
    return COREDNS_VERSIONS[nearest]


def _repository(config: Mapping[str, Any]) -> str:
    return str(config.get("imageRepository") or DEFAULT_IMAGE_REPOSITORY).rstrip("/")


def coredns_image(config: Mapping[str, Any]) -> str:
    """kubeadm's CoreDNS image for a (defaulted) ClusterConfiguration."""
    dns = _mapping(config.get("dns"))
    repository = str(dns.get("imageRepository") or _repository(config)).rstrip("/")
    if repository == DEFAULT_IMAGE_REPOSITORY:
        repository += "/coredns"  # the upstream image's name since CoreDNS 1.8
    tag = str(dns.get("imageTag") or coredns_version(str(config.get("kubernetesVersion") or "")))
    return f"{repository}/coredns:{tag}"


def kube_proxy_image(config: Mapping[str, Any]) -> str:
    """kubeadm's kube-proxy image: the control plane's repository and version."""
    tag = _NOT_IN_TAG.sub("_", str(config.get("kubernetesVersion") or ""))
    return f"{_repository(config)}/kube-proxy:{tag}"


def addon_objects(
    cluster_configuration: Mapping[str, Any], *, skip_phases: Sequence[str] = ()
) -> list[WorkloadObject]:
    """CoreDNS and kube-proxy for a ClusterConfiguration as `kubeadm init` uploads it."""
    skipped = {str(p).strip().lower() for p in skip_phases}
    objects: list[WorkloadObject] = []
    if not ({"addon", "addon/all", "addon/coredns"} & skipped) and not _disabled(
        cluster_configuration, "dns"
    ):
        objects += _coredns(cluster_configuration)
    if not ({"addon", "addon/all", "addon/kube-proxy"} & skipped) and not _disabled(
        cluster_configuration, "proxy"
    ):
        objects += _kube_proxy(cluster_configuration)
    return objects


def _disabled(config: Mapping[str, Any], section: str) -> bool:
    return bool(_mapping(config.get(section)).get("disabled"))


def _coredns(config: Mapping[str, Any]) -> list[WorkloadObject]:
    networking = _mapping(config.get("networking"))
    domain = str(networking.get("dnsDomain") or "cluster.local")
    service_subnet = str(networking.get("serviceSubnet") or "10.96.0.0/12").split(",")[0].strip()
    labels = {"k8s-app": "kube-dns"}
    corefile = _corefile(domain)
    deployment = {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": {"name": "coredns", "namespace": KUBE_SYSTEM, "labels": dict(labels)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": _CONTROL_PLANE_TAINT, "effect": "NoSchedule"},
                    ],
                    "dnsPolicy": "Default",
                    "containers": [
                        {
                            "name": "coredns",
                            "image": coredns_image(config),
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                            ],
                            "volumeMounts": [
                                {
                                    "name": "config-volume",
                                    "mountPath": "/etc/coredns",
                                    "readOnly": True,
                                }
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "config-volume",
                            "configMap": {
                                "name": "coredns",
                                "items": [{"key": "Corefile", "path": "Corefile"}],
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": KUBE_SYSTEM,
            "labels": {**labels, "kubernetes.io/cluster-service": "true"},
        },
        "spec": {
            "clusterIP": dns_ip(service_subnet),
            "selector": dict(labels),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }
    rules = [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    return [
        _service_account("coredns"),
        (CLUSTER_ROLE, None, _cluster_role("system:coredns", rules)),
        (
            CLUSTER_ROLE_BINDING,
            None,
            _binding(CLUSTER_ROLE_BINDING, "system:coredns", None, "system:coredns", "coredns"),
        ),
        _config_map("coredns", {"Corefile": corefile}),
        (DEPLOYMENT, KUBE_SYSTEM, deployment),
        (SERVICE, KUBE_SYSTEM, service),
    ]


def _corefile(domain: str) -> str:
    return (
        ".:53 {\n"
        "    errors\n"
        "    health {\n"
        "       lameduck 5s\n"
        "    }\n"
        "    ready\n"
        f"    kubernetes {domain} in-addr.arpa ip6.arpa {{\n"
        "       pods insecure\n"
        "       fallthrough in-addr.arpa ip6.arpa\n"
        "       ttl 30\n"
        "    }\n"
        "    prometheus :9153\n"
        "    forward . /etc/resolv.conf {\n"
        "       max_concurrent 1000\n"
        "    }\n"
        "    cache 30 {\n"
        f"       disable success {domain}\n"
        f"       disable denial {domain}\n"
        "    }\n"
        "    loop\n"
        "    reload\n"
        "    loadbalance\n"
        "}\n"
    )


def _kube_proxy(config: Mapping[str, Any]) -> list[WorkloadObject]:
    networking = _mapping(config.get("networking"))
    proxy_config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "bindAddress": "0.0.0.0",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "clusterCIDR": str(networking.get("podSubnet") or ""),
        "mode": "",
    }
    proxy_config.update(_mapping(_mapping(config.get("proxy")).get("config")))
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "default",
                "cluster": {
                    "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                    "server": f"https://{config.get('controlPlaneEndpoint') or ''}",
                },
            }
        ],
        "contexts": [
            {
                "name": "default",
                "context": {"cluster": "default", "namespace": "default", "user": "default"},
            }
        ],
        "current-context": "default",
        "users": [
            {
                "name": "default",
                "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
            }
        ],
    }
    labels = {"k8s-app": "kube-proxy"}
    daemon_set = {
        "apiVersion": DAEMON_SET.api_version,
        "kind": DAEMON_SET.kind,
        "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "kube-proxy",
                    "hostNetwork": True,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": "kube-proxy",
                            "image": kube_proxy_image(config),
                            "imagePullPolicy": "IfNotPresent",
                            "command": [
                                "/usr/local/bin/kube-proxy",
                                "--config=/var/lib/kube-proxy/config.conf",
                                "--hostname-override=$(NODE_NAME)",
                            ],
                            "env": [
                                {
                                    "name": "NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                }
                            ],
                            "securityContext": {"privileged": True},
                            "volumeMounts": [
                                {"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
                                {
                                    "name": "lib-modules",
                                    "mountPath": "/lib/modules",
                                    "readOnly": True,
                                },
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    ],
                },
            },
        },
    }
    read_config_map = [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["kube-proxy"],
            "verbs": ["get"],
        }
    ]
    role = {
        "apiVersion": ROLE.api_version,
        "kind": ROLE.kind,
        "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM},
        "rules": read_config_map,
    }
    return [
        _service_account("kube-proxy"),
        (
            CLUSTER_ROLE_BINDING,
            None,
            _binding(
                CLUSTER_ROLE_BINDING,
                "kubeadm:node-proxier",
                None,
                "system:node-proxier",
                "kube-proxy",
            ),
        ),
        (ROLE, KUBE_SYSTEM, role),
        (
            ROLE_BINDING,
            KUBE_SYSTEM,
            {
                "apiVersion": ROLE_BINDING.api_version,
                "kind": ROLE_BINDING.kind,
                "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM},
                "roleRef": {"apiGroup": _RBAC, "kind": "Role", "name": "kube-proxy"},
                "subjects": [
                    {"kind": "Group", "apiGroup": _RBAC, "name": NODE_BOOTSTRAP_TOKEN_GROUP}
                ],
            },
        ),
        _config_map(
            "kube-proxy",
            {
                "config.conf": yaml.safe_dump(proxy_config, sort_keys=True),
                "kubeconfig.conf": yaml.safe_dump(kubeconfig, sort_keys=False),
            },
            labels={"app": "kube-proxy"},
        ),
        (DAEMON_SET, KUBE_SYSTEM, daemon_set),
    ]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _service_account(name: str) -> WorkloadObject:
    body = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": KUBE_SYSTEM},
    }
    return SERVICE_ACCOUNT, KUBE_SYSTEM, body


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": CLUSTER_ROLE.api_version,
        "kind": CLUSTER_ROLE.kind,
        "metadata": {"name": name},
        "rules": rules,
    }


def _binding(
    resource: Resource, name: str, namespace: str | None, role: str, service_account: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": KUBE_SYSTEM}],
    }


def _config_map(
    name: str, data: Mapping[str, str], *, labels: Mapping[str, str] | None = None
) -> WorkloadObject:
    metadata: dict[str, Any] = {"name": name, "namespace": KUBE_SYSTEM}
    if labels:
        metadata["labels"] = dict(labels)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}
    return CONFIG_MAP, KUBE_SYSTEM, body
