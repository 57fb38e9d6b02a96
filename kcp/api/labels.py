"""Labels, annotations, finalizers and Secret types, spelled as Cluster API v1beta2 spells them.

Existing tooling (clusterctl, dashboards, kubectl selectors) finds kcp's objects
only if these strings match Cluster API's exactly.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
"""On every object that belongs to a Cluster; the value is the Cluster's name."""

MACHINE_CONTROL_PLANE_LABEL = "cluster.x-k8s.io/control-plane"
"""On control-plane Machines (value empty); selectors test only its presence."""

MACHINE_CONTROL_PLANE_NAME_LABEL = "cluster.x-k8s.io/control-plane-name"
"""On control-plane Machines: the owning KubeadmControlPlane's name (hashed if too long)."""

WATCH_LABEL = "cluster.x-k8s.io/watch-filter"
"""`--watch-filter=V` restricts a controller to objects with this label set to V."""

CONTRACT_LABEL = "cluster.x-k8s.io/v1beta2"
"""On provider CRDs: the CRD versions that implement the v1beta2 contract (`v1beta2`)."""

PAUSED_ANNOTATION = "cluster.x-k8s.io/paused"
"""Present (any value) on an object: its controllers leave it alone."""

DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
"""Marks a Machine to be preferred when scaling down."""

# On an object cloned from a template: the template's name and `Kind.group`.
TEMPLATE_CLONED_FROM_NAME_ANNOTATION = "cluster.x-k8s.io/cloned-from-name"
TEMPLATE_CLONED_FROM_GROUPKIND_ANNOTATION = "cluster.x-k8s.io/cloned-from-groupkind"

MACHINE_CERTIFICATES_EXPIRY_DATE_ANNOTATION = "machine.cluster.x-k8s.io/certificates-expiry"
"""Lets a user state a Machine's certificate expiry (RFC 3339) instead of it being read."""

PRE_TERMINATE_DELETE_HOOK_ANNOTATION_PREFIX = "pre-terminate.delete.hook.machine.cluster.x-k8s.io"
KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION = (
    f"{PRE_TERMINATE_DELETE_HOOK_ANNOTATION_PREFIX}/kcp-cleanup"
)
"""On every Machine KCP creates: Cluster API core does not delete the infrastructure machine
of a deleting Machine that carries it; KCP removes it once the Machine's etcd member is gone."""

REMEDIATION_IN_PROGRESS_ANNOTATION = "controlplane.cluster.x-k8s.io/remediation-in-progress"
REMEDIATION_FOR_ANNOTATION = "controlplane.cluster.x-k8s.io/remediation-for"
SKIP_COREDNS_ANNOTATION = "controlplane.cluster.x-k8s.io/skip-coredns"
SKIP_KUBE_PROXY_ANNOTATION = "controlplane.cluster.x-k8s.io/skip-kube-proxy"

KUBEADM_CLUSTER_CONFIGURATION_ANNOTATION = (
    "controlplane.cluster.x-k8s.io/kubeadm-cluster-configuration"
)
"""Legacy (Cluster API <= 1.11, v1beta1): the JSON ClusterConfiguration a Machine was
created with. v1beta2 compares Machines' KubeadmConfigs instead and removes it."""

KUBEADM_CONTROL_PLANE_FINALIZER = "kubeadm.controlplane.cluster.x-k8s.io"
"""Held by kcp on a KubeadmControlPlane until its Machines are gone."""

CLUSTER_SECRET_TYPE = "cluster.x-k8s.io/secret"
"""The `type` of the certificate and kubeconfig Secrets of a cluster."""

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_MAX_LABEL_VALUE_LENGTH = 63


def format_label_value(value: str) -> str:
    """`value` if it is a valid label value, else Cluster API's hash of it (`hash_<fnv32a>_z`).

    Matches Cluster API's `format.MustFormatValue`, so a long KubeadmControlPlane
    name yields the same control-plane-name label in both.
    """
    if len(value) <= _MAX_LABEL_VALUE_LENGTH and _LABEL_VALUE.fullmatch(value):
        return value
    digest = 0x811C9DC5
    for byte in value.encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    encoded = base64.urlsafe_b64encode(digest.to_bytes(4, "big")).decode().rstrip("=")
    return f"hash_{encoded}_z"


def control_plane_machine_labels(
    kcp_name: str, cluster_name: str, template_labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The labels of a control-plane Machine: the template's, then the three kcp forces."""
    labels = dict(template_labels or {})
    labels[CLUSTER_NAME_LABEL] = cluster_name
    labels[MACHINE_CONTROL_PLANE_LABEL] = ""
    labels[MACHINE_CONTROL_PLANE_NAME_LABEL] = format_label_value(kcp_name)
    return labels


def control_plane_selector(cluster_name: str) -> str:
    """The label selector of a cluster's control-plane Machines, as in `status.selector`."""
    return f"{CLUSTER_NAME_LABEL}={cluster_name},{MACHINE_CONTROL_PLANE_LABEL}"
