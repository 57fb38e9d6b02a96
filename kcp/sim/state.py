"""What the simulator's controllers share: caches, the management API, the live clusters.

One `SimState` per simulator run. Controllers read objects from the informers'
caches (read-only dicts), write through `kube`, and find the processes they
manage in `clusters` and `machines`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from kcp.api import groups
from kcp.api.objects import dig
from kcp.rest import Kube, Resource
from kcp.runtime.informer import Informer
from kcp.sim.cluster import SimCluster, SimContext
from kcp.sim.machine import SimMachine

__all__ = [
    "LOCAL_CLUSTER_FINALIZER",
    "LOCAL_MACHINE_FINALIZER",
    "Caches",
    "SimState",
]

LOCAL_CLUSTER_FINALIZER = "localcluster.infrastructure.cluster.x-k8s.io"
LOCAL_MACHINE_FINALIZER = "localmachine.infrastructure.cluster.x-k8s.io"
"""Cluster API core's Machine finalizer, which the simulator plays on local machines."""

Key = tuple[str, str]


@dataclass
class Caches:
    """One informer per kind the simulator watches."""

    clusters: Informer
    local_clusters: Informer
    local_machines: Informer
    machines: Informer

    def all(self) -> list[Informer]:
        return [
            self.clusters,
            self.local_clusters,
            self.local_machines,
            self.machines,
        ]

    @classmethod
    def create(cls, api_client: Any, namespace: str | None) -> Caches:
        def informer(resource: Resource) -> Informer:
            return Informer(
                api_client,
                resource,
                namespace=namespace,
                name=f"sim-{resource.plural}",
            )

        return cls(
            clusters=informer(groups.CLUSTER),
            local_clusters=informer(groups.LOCAL_CLUSTER),
            local_machines=informer(groups.LOCAL_MACHINE),
            machines=informer(groups.MACHINE),
        )


class SimState:
    """Shared by the simulator's controllers; `clusters`/`machines` are guarded by `lock`."""

    def __init__(self, ctx: SimContext, kube: Kube, caches: Caches) -> None:
        self.ctx = ctx
        self.kube = kube
        self.caches = caches
        self.clusters: dict[Key, SimCluster] = {}
        """By the LocalCluster's (namespace, name)."""
        self.machines: dict[Key, SimMachine] = {}
        """By the LocalMachine's (namespace, name)."""
        self.lock = threading.RLock()

    def sim_cluster_for(self, namespace: str, cluster_name: str) -> SimCluster | None:
        """The live cluster behind a Cluster API Cluster (through its LocalCluster)."""
        cluster = self.caches.clusters.get(namespace, cluster_name)
        infra = dig(cluster, "spec", "infrastructureRef", "name")
        if not infra:
            return None
        with self.lock:
            return self.clusters.get((namespace, str(infra)))
