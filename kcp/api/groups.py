"""API groups, versions and kinds of every resource kcp touches.

One `kcp.rest.Resource` per kind, so that a REST path or an `apiVersion` is never
spelled by hand elsewhere.
"""

from __future__ import annotations

from kcp.rest import Resource

CLUSTER_GROUP = "cluster.x-k8s.io"
CONTROLPLANE_GROUP = "controlplane.cluster.x-k8s.io"
BOOTSTRAP_GROUP = "bootstrap.cluster.x-k8s.io"
INFRASTRUCTURE_GROUP = "infrastructure.cluster.x-k8s.io"
VERSION = "v1beta2"
"""The Cluster API version (and contract) kcp serves and reads."""


KUBEADM_CONTROL_PLANE = Resource(
    CONTROLPLANE_GROUP, VERSION, "KubeadmControlPlane", "kubeadmcontrolplanes"
)
KUBEADM_CONTROL_PLANE_TEMPLATE = Resource(
    CONTROLPLANE_GROUP, VERSION, "KubeadmControlPlaneTemplate", "kubeadmcontrolplanetemplates"
)
CLUSTER = Resource(CLUSTER_GROUP, VERSION, "Cluster", "clusters")
MACHINE = Resource(CLUSTER_GROUP, VERSION, "Machine", "machines")
KUBEADM_CONFIG = Resource(BOOTSTRAP_GROUP, VERSION, "KubeadmConfig", "kubeadmconfigs")
LOCAL_CLUSTER = Resource(INFRASTRUCTURE_GROUP, VERSION, "LocalCluster", "localclusters")
LOCAL_MACHINE = Resource(INFRASTRUCTURE_GROUP, VERSION, "LocalMachine", "localmachines")
LOCAL_MACHINE_TEMPLATE = Resource(
    INFRASTRUCTURE_GROUP, VERSION, "LocalMachineTemplate", "localmachinetemplates"
)

SECRET = Resource("", "v1", "Secret", "secrets")
CONFIG_MAP = Resource("", "v1", "ConfigMap", "configmaps")
EVENT = Resource("", "v1", "Event", "events")
POD = Resource("", "v1", "Pod", "pods")
NODE = Resource("", "v1", "Node", "nodes", namespaced=False)
NAMESPACE = Resource("", "v1", "Namespace", "namespaces", namespaced=False)
LEASE = Resource("coordination.k8s.io", "v1", "Lease", "leases")

CUSTOM_RESOURCES: tuple[Resource, ...] = (
    KUBEADM_CONTROL_PLANE,
    KUBEADM_CONTROL_PLANE_TEMPLATE,
    LOCAL_CLUSTER,
    LOCAL_MACHINE,
    LOCAL_MACHINE_TEMPLATE,
)
"""Every kind whose CRD lives in `config/crd/bases/` (kcp's own and its simulator's)."""

CLUSTER_API_RESOURCES: tuple[Resource, ...] = (CLUSTER, MACHINE, KUBEADM_CONFIG)
"""Cluster API's kinds kcp reads and writes; their CRDs come from Cluster API itself."""

KNOWN_RESOURCES: tuple[Resource, ...] = (
    *CUSTOM_RESOURCES,
    *CLUSTER_API_RESOURCES,
    SECRET,
    CONFIG_MAP,
    EVENT,
    POD,
    NODE,
    NAMESPACE,
    LEASE,
)
"""Every kind named here; a `kcp.rest.Kube` given them (`known=`) resolves them without
discovery."""

_KNOWN: dict[tuple[str, str], Resource] = {(r.group, r.kind): r for r in KNOWN_RESOURCES}


def find(group: str, kind: str) -> Resource | None:
    """The known resource of a group and kind (as in a v1beta2 object reference), if any.

    Any other kind (another infrastructure provider's) must be resolved through
    API discovery.
    """
    return _KNOWN.get((group, kind))
