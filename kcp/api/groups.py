"""API groups, versions, kinds and REST paths of every resource kcp touches.

One `Resource` per kind, so that a REST path or an `apiVersion` is never spelled
by hand elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

CLUSTER_GROUP = "cluster.x-k8s.io"
CONTROLPLANE_GROUP = "controlplane.cluster.x-k8s.io"
BOOTSTRAP_GROUP = "bootstrap.cluster.x-k8s.io"
INFRASTRUCTURE_GROUP = "infrastructure.cluster.x-k8s.io"
VERSION = "v1beta2"
"""The Cluster API version (and contract) kcp serves and reads."""


@dataclass(frozen=True, slots=True)
class Resource:
    """A kind and where the API server serves it. The core group is `""`."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The `apiVersion` of objects of this kind: `group/version`, or `v1` for core."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def crd_name(self) -> str:
        """The CustomResourceDefinition name, `plural.group`."""
        return f"{self.plural}.{self.group}"

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection, or of one object when `name` is given.

        Without a namespace, a namespaced kind's path is its all-namespaces
        collection (for list and watch); naming an object then needs a namespace.
        """
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            if not self.namespaced:
                raise ValueError(f"{self.kind} is cluster-scoped; it has no namespace")
            prefix = f"{prefix}/namespaces/{quote(namespace, safe='')}"
        elif name is not None and self.namespaced:
            raise ValueError(f"{self.kind} is namespaced; naming one needs a namespace")
        path = f"{prefix}/{self.plural}"
        return path if name is None else f"{path}/{quote(name, safe='')}"


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

_KNOWN: dict[tuple[str, str], Resource] = {
    (r.group, r.kind): r
    for r in (
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
}


def find(group: str, kind: str) -> Resource | None:
    """The known resource of a group and kind (as in a v1beta2 object reference), if any.

    Any other kind (another infrastructure provider's) must be resolved through
    API discovery.
    """
    return _KNOWN.get((group, kind))
