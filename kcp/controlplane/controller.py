"""Wiring: the informers the reconciler reads, the events that wake it, the controller itself.

Watched kinds and what a change means:

- KubeadmControlPlane (filtered by `--watch-filter`): reconcile it.
- Cluster (filtered too): reconcile the control plane its `spec.controlPlaneRef`
  names, on a change to what the reconciler reads of it (not on new conditions
  alone); a deleted Cluster is evicted from the tracker at once.
- Machine: reconcile the KubeadmControlPlane that controls it; a control-plane
  Machine no controller owns wakes its Cluster's control plane, which adopts it.
- KubeadmConfig: cached for rollout comparisons; wakes its control plane too:
  the KubeadmControlPlane that owns it, or, once Cluster API's Machine
  controller has made the Machine its controller instead, the one that
  controls that Machine (else, for a control-plane config, the one its
  Cluster names). Cluster API's KCP does not watch them at all; kcp does,
  because what CABPK and users write into them decides whether a Machine is
  up to date (so a change to conditions alone wakes nothing).
- Secret, metadata only and only those labelled with a cluster name: wakes the
  control plane that owns it or whose Cluster it belongs to, and tells the
  tracker its credentials may have changed. A reconciler that needs a Secret's
  data reads that one Secret live.
- The tracker's health of a workload cluster: when a probe finds it connected or
  down, or its API server or etcd starts or stops answering, its control plane is
  reconciled at once (Cluster API's cluster cache wakes its KCP likewise).

Objects kcp creates carry the `--watch-filter` label of their control plane,
but only the KubeadmControlPlane and Cluster informers filter on it: filtering
Machines too would hide a Machine whose label was removed and make kcp create
another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kcp.api import groups, labels
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.reconciler import KubeadmControlPlaneReconciler, ReconcilerOptions
from kcp.controlplane.workload import TrackerLike
from kcp.rest import Kube
from kcp.runtime.controller import Controller, ObjectKey
from kcp.runtime.handlers import (
    Key,
    enqueue_owner,
    enqueue_self,
    map_to,
    owner_keys,
    relevant_fields,
    unless_unchanged,
)
from kcp.runtime.informer import Informer
from kcp.runtime.manager import Manager
from kcp.runtime.ratelimit import ItemExponentialRateLimiter, default_controller_rate_limiter
from kcp.runtime.store import label_index_value
from kcp.tracker.identity import ClusterKey

__all__ = [
    "CONTROLLER_NAME",
    "ControlPlaneController",
    "InformerCache",
    "cluster_to_control_plane",
    "kubeadm_config_to_control_plane",
    "machine_cluster_index",
    "machine_to_control_plane",
    "secret_to_control_plane",
    "setup",
]

CONTROLLER_NAME = "kubeadmcontrolplane"
CLUSTER_INDEX = "cluster"


def machine_cluster_index(obj: dict[str, Any]) -> list[str]:
    """Index Machines (and KubeadmConfigs) by "namespace/cluster": `spec.clusterName`, else
    the cluster-name label."""
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    cluster = (obj.get("spec") or {}).get("clusterName") or (metadata.get("labels") or {}).get(
        labels.CLUSTER_NAME_LABEL
    )
    return [label_index_value(namespace, str(cluster))] if cluster else []


CLUSTER_FIELDS_READ = relevant_fields("initialization", "failureDomains")
"""Of a Cluster's status, the reconciler reads only these (`ClusterView`)."""
CONFIG_FIELDS_READ = relevant_fields("initialization", "dataSecretName")
"""Of a KubeadmConfig's status, only these (adoption); its spec decides up to date."""


def cluster_to_control_plane(obj: dict[str, Any]) -> list[Key]:
    """A Cluster maps to the KubeadmControlPlane its `spec.controlPlaneRef` names."""
    ref = (obj.get("spec") or {}).get("controlPlaneRef") or {}
    if ref.get("kind") != groups.KUBEADM_CONTROL_PLANE.kind:
        return []
    if ref.get("apiGroup", groups.CONTROLPLANE_GROUP) != groups.CONTROLPLANE_GROUP:
        return []
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    return [(namespace, str(ref["name"]))] if ref.get("name") else []


def health_to_control_plane(
    cluster_of: Callable[[str, str], Mapping[str, Any] | None],
    enqueue: Callable[[ObjectKey], None],
) -> Callable[[ClusterKey], None]:
    """The tracker's health listener: a cluster that connected, went down, or whose API
    server or etcd changed verdict has its control plane reconciled now, as Cluster API's
    cluster cache wakes its KCP, instead of at the next periodic inspection."""

    def handle(key: ClusterKey) -> None:
        cluster = cluster_of(key.namespace, key.name)
        if cluster is None or str((cluster.get("metadata") or {}).get("uid") or "") != key.uid:
            return  # gone, or re-created: the tracker evicts the old one
        for namespace, name in cluster_to_control_plane(dict(cluster)):
            enqueue(ObjectKey(namespace, name))

    return handle


class InformerCache:
    """The reconciler's `Cache`, answered from the informers' stores."""

    def __init__(
        self,
        kubeadm_control_planes: Informer,
        clusters: Informer,
        machines: Informer,
        kubeadm_configs: Informer,
        secrets: Informer,
    ) -> None:
        self.kubeadm_control_planes = kubeadm_control_planes
        self.clusters = clusters
        self.machines = machines
        self.kubeadm_configs = kubeadm_configs
        self.secrets = secrets

    def kubeadm_control_plane(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.kubeadm_control_planes.get(namespace, name)

    def cluster(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.clusters.get(namespace, name)

    def machine(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.machines.get(namespace, name)

    def cluster_machines(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]:
        return list(
            self.machines.by_index(CLUSTER_INDEX, label_index_value(namespace, cluster_name))
        )

    def kubeadm_config(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.kubeadm_configs.get(namespace, name)

    def cluster_kubeadm_configs(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]:
        return list(
            self.kubeadm_configs.by_index(CLUSTER_INDEX, label_index_value(namespace, cluster_name))
        )

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.secrets.get(namespace, name)

    @property
    def informers(self) -> list[Informer]:
        return [
            self.kubeadm_control_planes,
            self.clusters,
            self.machines,
            self.kubeadm_configs,
            self.secrets,
        ]


@dataclass
class ControlPlaneController:
    """What `setup` assembled; the manager runs the informers and the controller."""

    controller: Controller
    reconciler: KubeadmControlPlaneReconciler
    cache: InformerCache


def secret_to_control_plane(cache: InformerCache) -> Any:
    """A Secret maps to the control plane that owns it, else to its cluster's control plane."""
    owners = enqueue_owner(groups.KUBEADM_CONTROL_PLANE.kind, groups.CONTROLPLANE_GROUP).mapper

    def keys(obj: dict[str, Any]) -> list[Key]:
        found = list(owners(obj))
        if found:
            return found
        metadata = obj.get("metadata") or {}
        cluster_name = (metadata.get("labels") or {}).get(labels.CLUSTER_NAME_LABEL)
        namespace = str(metadata.get("namespace") or "")
        cluster = cache.cluster(namespace, str(cluster_name)) if cluster_name else None
        return cluster_to_control_plane(dict(cluster)) if cluster is not None else []

    return keys


def _labelled_cluster_control_plane(cache: InformerCache, obj: Mapping[str, Any]) -> list[Key]:
    """The control plane of the Cluster a control-plane-labelled object names by label."""
    metadata = obj.get("metadata") or {}
    obj_labels = metadata.get("labels") or {}
    cluster_name = obj_labels.get(labels.CLUSTER_NAME_LABEL)
    if labels.MACHINE_CONTROL_PLANE_LABEL not in obj_labels or not cluster_name:
        return []
    cluster = cache.cluster(str(metadata.get("namespace") or ""), str(cluster_name))
    return cluster_to_control_plane(dict(cluster)) if cluster is not None else []


def machine_to_control_plane(cache: InformerCache) -> Any:
    """A Machine maps to the control plane that controls it; a control-plane Machine no
    controller owns, to its Cluster's control plane (which may adopt it)."""
    controllers = owner_keys(groups.KUBEADM_CONTROL_PLANE.kind, groups.CONTROLPLANE_GROUP)

    def keys(obj: dict[str, Any]) -> list[Key]:
        found = list(controllers(obj))
        if found:
            return found
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        if any(ref.get("controller") for ref in refs):
            return []
        return _labelled_cluster_control_plane(cache, obj)

    return keys


def kubeadm_config_to_control_plane(cache: InformerCache) -> Any:
    """A KubeadmConfig maps to the control plane of its Machine, whoever owns it now.

    kcp creates it owned by the KubeadmControlPlane; Cluster API's Machine
    controller then replaces that reference with the Machine as controller.
    A config whose Machine is not cached yet falls back to its Cluster's
    control plane, if it is labelled a control-plane config.
    """
    kcp_owners = owner_keys(
        groups.KUBEADM_CONTROL_PLANE.kind, groups.CONTROLPLANE_GROUP, controller_only=False
    )
    machine_owners = owner_keys(groups.MACHINE.kind, groups.CLUSTER_GROUP)
    machine_controller = owner_keys(groups.KUBEADM_CONTROL_PLANE.kind, groups.CONTROLPLANE_GROUP)

    def keys(obj: dict[str, Any]) -> list[Key]:
        found = list(kcp_owners(obj))
        for namespace, name in machine_owners(obj):
            machine = cache.machine(namespace, name)
            if machine is not None:
                found.extend(machine_controller(dict(machine)))
        if found:
            return list(dict.fromkeys(found))
        return _labelled_cluster_control_plane(cache, obj)

    return keys


def setup(
    manager: Manager,
    api_client: Any,
    tracker: TrackerLike,
    *,
    options: ReconcilerOptions | None = None,
    namespace: str | None = None,
    kube: Kube | None = None,
    recorder: EventRecorder | None = None,
) -> ControlPlaneController:
    """Build the informers, the reconciler and the controller, and add them to `manager`."""
    selector = manager.label_selector
    kcps = Informer(
        api_client,
        groups.KUBEADM_CONTROL_PLANE,
        namespace=namespace,
        label_selector=selector,
        name="kubeadmcontrolplanes",
    )
    clusters = Informer(
        api_client,
        groups.CLUSTER,
        namespace=namespace,
        label_selector=selector,
        name="clusters",
    )
    machines = Informer(api_client, groups.MACHINE, namespace=namespace, name="machines")
    machines.add_indexer(CLUSTER_INDEX, machine_cluster_index)
    configs = Informer(
        api_client, groups.KUBEADM_CONFIG, namespace=namespace, name="kubeadmconfigs"
    )
    configs.add_indexer(CLUSTER_INDEX, machine_cluster_index)
    secrets = Informer(
        api_client,
        groups.SECRET,
        namespace=namespace,
        label_selector=labels.CLUSTER_NAME_LABEL,
        metadata_only=True,
        name="secrets",
    )
    cache = InformerCache(kcps, clusters, machines, configs, secrets)
    kube = kube or Kube(api_client, field_manager="kcp-controller", known=groups.KNOWN_RESOURCES)
    # One failure history per key: the queue retries exceptions by it, the reconciler backs
    # off user errors by it, and a success forgets it for both.
    failures = ItemExponentialRateLimiter()
    reconciler = KubeadmControlPlaneReconciler(
        kube,
        cache,
        tracker,
        recorder=recorder or EventRecorder(kube),
        options=options,
        failures=failures,
    )

    def known_keys() -> list[ObjectKey]:
        return [
            ObjectKey(str(o["metadata"].get("namespace") or ""), str(o["metadata"]["name"]))
            for o in kcps.list()
        ]

    controller = manager.new_controller(
        CONTROLLER_NAME,
        reconciler,
        keys=known_keys,
        rate_limiter=default_controller_rate_limiter(failures),
    )
    enqueue = controller.enqueue
    enqueue_kcp = enqueue_self().bind(enqueue)
    own_writes = reconciler.own_writes

    def on_kcp(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if not own_writes.is_echo(event_type, obj):
            enqueue_kcp(event_type, obj, old)

    kcps.add_handler(on_kcp)
    # Cluster API's core rewrites a Cluster's conditions and CABPK a KubeadmConfig's on
    # most of our own status writes: only what the reconciler reads of them wakes it.
    clusters.add_handler(
        unless_unchanged(map_to(cluster_to_control_plane).bind(enqueue), CLUSTER_FIELDS_READ)
    )
    handler = getattr(tracker, "cluster_event_handler", None)
    if callable(handler):
        clusters.add_handler(handler())
    machines.add_handler(map_to(machine_to_control_plane(cache)).bind(enqueue))
    configs.add_handler(
        unless_unchanged(
            map_to(kubeadm_config_to_control_plane(cache)).bind(enqueue), CONFIG_FIELDS_READ
        )
    )
    secrets.add_handler(map_to(secret_to_control_plane(cache)).bind(enqueue))
    secret_handler = getattr(tracker, "secret_event_handler", None)
    if callable(secret_handler):
        secrets.add_handler(secret_handler())
    on_health_change = getattr(tracker, "on_health_change", None)
    if callable(on_health_change):
        on_health_change(health_to_control_plane(cache.cluster, enqueue))
    for informer in cache.informers:
        manager.add_informer(informer)
    return ControlPlaneController(controller, reconciler, cache)
