"""Local simulated infrastructure: each control-plane Machine becomes real processes.

A Machine whose infrastructure is a `LocalMachine` becomes an etcd member and a
kube-apiserver on a loopback address of its own, behind a per-cluster load
balancer, booted from the bootstrap data Cluster API's kubeadm bootstrap
provider wrote. Cluster API's own controllers (run beside it from the pinned
module) do everything else. For tests and `kcp sim`/`kcp dev` only: product
code never imports this package.
"""

from kcp.sim.faults import ANNOTATION_PREFIX, Component, Fault, annotation_key
from kcp.sim.manifests import ClusterMaterial, cluster_objects, machine_objects, secret_object
from kcp.sim.options import SimOptions
from kcp.sim.simulator import SimError, Simulator

__all__ = [
    "ANNOTATION_PREFIX",
    "ClusterMaterial",
    "Component",
    "Fault",
    "SimError",
    "SimOptions",
    "Simulator",
    "annotation_key",
    "cluster_objects",
    "machine_objects",
    "secret_object",
]
