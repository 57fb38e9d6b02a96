"""Many cheap workload clusters in the management cluster, all sharing one real etcd.

Each cluster `c<i>` is what a controller needs to check a control plane's etcd:
a `Cluster`, a `KubeadmControlPlane` (labelled with the cluster name, owned by
the Cluster, its etcd endpoints in an annotation) and a `<cluster>-etcd` Secret
holding the etcd CA as kubeadm writes it. Every cluster's Secret holds the same
CA — the one of the shared etcd — yet the tracker keys everything by Cluster
UID, so each cluster still gets its own client key and certificate.

`bump()` changes a control plane's metadata for its Machines (an annotation in
`spec.machineTemplate.metadata`: a new `generation`, no rollout); a controller
shows it reconciled the change by setting `status.observedGeneration`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kcp.api import groups
from kcp.api.labels import CLUSTER_NAME_LABEL
from kcp.bench.progress import Progress
from kcp.bench.workload import SteadyWorkload

__all__ = [
    "BUMP_ANNOTATION",
    "ENDPOINTS_ANNOTATION",
    "Fleet",
    "SharedEtcd",
    "cluster_name",
    "steady_workload",
]

ENDPOINTS_ANNOTATION = "bench.kcp.x-k8s.io/etcd-endpoints"
"""Comma-separated `host:port` of the cluster's etcd members (Machines would give them)."""

BUMP_ANNOTATION = "bench.kcp.x-k8s.io/bump"
"""Set on the machine template by `bump()`: a spec change the controller must observe."""

KUBERNETES_VERSION = "v1.34.4"
ETCD_CLIENT_PORT = 2379
KUBELET_PORT = 10250
_CREATE_WORKERS = 8


_FLEET_KINDS = (
    groups.KUBEADM_CONTROL_PLANE,
    groups.CLUSTER,
    groups.SECRET,
    groups.MACHINE,
    groups.LOCAL_MACHINE,
    groups.LOCAL_MACHINE_TEMPLATE,
)
"""What a fleet creates: its clusters' objects, by kind."""


def cluster_name(index: int) -> str:
    return f"c{index:04d}"


@dataclass
class Fleet:
    """Creates and changes the benchmark's clusters in one namespace."""

    api_client: Any
    namespace: str
    etcd_ca: Any
    """`kcp.certs.KeyPair` of the shared etcd's CA."""
    etcd_endpoints: Sequence[str]
    workload: SteadyWorkload | None = None
    """For `kcp run`: the workload side, Secrets and Machine of a steady cluster."""

    def __post_init__(self) -> None:
        from kcp.rest import Kube

        self.kube = Kube(self.api_client, field_manager="kcp-bench")
        self.size = 0

    def create_namespace(self) -> None:
        from kcp.rest import ApiError

        try:
            self.kube.create(groups.NAMESPACE, None, {"metadata": {"name": self.namespace}})
        except ApiError as error:
            if error.status != 409:
                raise

    def grow(self, total: int, progress: Progress) -> None:
        """Create clusters until there are `total` (indexes continue where they stopped)."""
        wanted = range(self.size, total)
        if not wanted:
            return
        progress.step(
            f"creating clusters {self.size}..{total - 1} in {self.namespace}", len(wanted)
        )
        from kcp.certs import key_pair_to_secret_data

        etcd_data = key_pair_to_secret_data(self.etcd_ca)
        encoded = {k: _b64(v) for k, v in etcd_data.items()}

        def create(index: int) -> None:
            self._create_cluster(cluster_name(index), encoded)
            progress.advance()

        with ThreadPoolExecutor(_CREATE_WORKERS, thread_name_prefix="bench-fleet") as pool:
            for future in [pool.submit(create, i) for i in wanted]:
                future.result()
        self.size = total

    def _create_cluster(self, name: str, etcd_data: dict[str, str]) -> None:
        cluster_spec: dict[str, Any] = {
            "controlPlaneRef": {
                "apiGroup": groups.CONTROLPLANE_GROUP,
                "kind": "KubeadmControlPlane",
                "name": name,
            }
        }
        cluster_status: dict[str, Any] | None = None
        if self.workload is not None:
            extra_spec, cluster_status = self.workload.cluster_patch()
            cluster_spec.update(extra_spec)
        cluster = self.kube.create(
            groups.CLUSTER,
            self.namespace,
            {
                "apiVersion": groups.CLUSTER.api_version,
                "kind": "Cluster",
                "metadata": {"name": name, "labels": {"bench.kcp.x-k8s.io/fleet": "true"}},
                "spec": cluster_spec,
            },
        )
        if cluster_status is not None:
            self.kube.merge_patch(
                groups.CLUSTER,
                self.namespace,
                name,
                {"status": cluster_status},
                subresource="status",
            )
        if self.workload is not None:
            # The machine template both KCPs read on every reconcile (Cluster API's fails
            # the reconcile without it); no Machine is ever cloned from it here.
            self.kube.create(
                groups.LOCAL_MACHINE_TEMPLATE,
                self.namespace,
                {
                    "apiVersion": groups.LOCAL_MACHINE_TEMPLATE.api_version,
                    "kind": "LocalMachineTemplate",
                    "metadata": {"name": name, "labels": {CLUSTER_NAME_LABEL: name}},
                    "spec": {"template": {"spec": {}}},
                },
            )
        kcp = self.kube.create(
            groups.KUBEADM_CONTROL_PLANE,
            self.namespace,
            {
                "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
                "kind": "KubeadmControlPlane",
                "metadata": {
                    "name": name,
                    "labels": {CLUSTER_NAME_LABEL: name},
                    "annotations": {ENDPOINTS_ANNOTATION: ",".join(self.etcd_endpoints)},
                    "ownerReferences": [_owner(cluster, controller=False)],
                },
                "spec": {
                    "replicas": 1,
                    "version": KUBERNETES_VERSION,
                    "machineTemplate": {
                        "spec": {
                            "infrastructureRef": {
                                "apiGroup": groups.INFRASTRUCTURE_GROUP,
                                "kind": "LocalMachineTemplate",
                                "name": name,
                            }
                        }
                    },
                    # What Cluster API's defaulting webhook writes (none runs here).
                    "rollout": {
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
                    },
                },
            },
        )
        self._create_secret(name, "etcd", etcd_data, _owner(kcp, controller=True))
        if self.workload is None:
            return
        for purpose in ("ca", "sa", "proxy"):
            data = {k: _b64(v) for k, v in self.workload.secret_data[purpose].items()}
            self._create_secret(name, purpose, data, _owner(kcp, controller=True))
        # A kubeconfig the user wrote (no controller): kcp reads it and leaves it alone.
        kubeconfig = {k: _b64(v) for k, v in self.workload.secret_data["kubeconfig"].items()}
        self._create_secret(name, "kubeconfig", kubeconfig, None)
        machine = self.workload.machine(name, kcp, KUBERNETES_VERSION)
        created = self.kube.create(groups.MACHINE, self.namespace, machine)
        self.kube.merge_patch(
            groups.MACHINE,
            self.namespace,
            machine["metadata"]["name"],
            {"status": self.workload.machine_status()},
            subresource="status",
        )
        # Its infrastructure machine, as cloned from the template: both KCPs read it on
        # every reconcile and keep its labels and annotations in step with the Machine's.
        self.kube.create(
            groups.LOCAL_MACHINE, self.namespace, self.workload.infra_machine(name, created)
        )

    def _create_secret(
        self, cluster: str, purpose: str, data: dict[str, str], owner: dict[str, Any] | None
    ) -> None:
        metadata: dict[str, Any] = {
            "name": f"{cluster}-{purpose}",
            "labels": {CLUSTER_NAME_LABEL: cluster},
        }
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        self.kube.create(
            groups.SECRET,
            self.namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "cluster.x-k8s.io/secret",
                "data": data,
            },
        )

    def bump(self, name: str, token: str | None = None) -> int:
        """Change the control plane's spec (to `token`, or a fresh one); returns its new
        `metadata.generation`."""
        patched = self.kube.merge_patch(
            groups.KUBEADM_CONTROL_PLANE,
            self.namespace,
            name,
            {
                "spec": {
                    "machineTemplate": {
                        "metadata": {"annotations": {BUMP_ANNOTATION: token or _token()}}
                    }
                }
            },
        )
        return int((patched.get("metadata") or {}).get("generation") or 0)

    def names(self) -> list[str]:
        return [cluster_name(i) for i in range(self.size)]

    def delete_all(self, names: Iterable[str] | None = None) -> None:
        """Delete every Cluster, control plane and Secret created (the namespace stays)."""
        for resource in _FLEET_KINDS:
            self.kube.request(
                "DELETE",
                resource.path(self.namespace),
                query=[
                    (
                        "labelSelector",
                        "bench.kcp.x-k8s.io/fleet"
                        if resource is groups.CLUSTER
                        else CLUSTER_NAME_LABEL,
                    )
                ],
            )

    def delete_namespace(self) -> None:
        """Delete everything in the namespace, then the namespace, once no controller runs.

        The local management cluster runs no kube-controller-manager (no namespace
        controller, no garbage collector), so each kind is deleted here, after the
        finalizers a controller left on control planes and Machines are removed.
        """
        from kcp.rest import ApiError

        def strip(resource: Any, name: str) -> None:
            with contextlib.suppress(ApiError):
                self.kube.merge_patch(
                    resource, self.namespace, name, {"metadata": {"finalizers": None}}
                )

        with ThreadPoolExecutor(_CREATE_WORKERS, thread_name_prefix="bench-fleet") as pool:
            for resource in (groups.KUBEADM_CONTROL_PLANE, groups.MACHINE):
                held = [
                    o["metadata"]["name"]
                    for o in self.kube.list(resource, self.namespace)
                    if o["metadata"].get("finalizers")
                ]
                for future in [pool.submit(strip, resource, n) for n in held]:
                    future.result()
        for resource in (*_FLEET_KINDS, groups.CONFIG_MAP, groups.EVENT):
            with contextlib.suppress(ApiError):
                self.kube.request("DELETE", resource.path(self.namespace))
        with contextlib.suppress(ApiError):
            self.kube.delete(groups.NAMESPACE, None, self.namespace)


class SharedEtcd:
    """One real etcd (TLS, an RSA-2048 CA as kubeadm makes) that every cluster shares.

    With `standard_port`, it listens on a loopback address of its own on port 2379,
    as a kubeadm node's etcd does, so a Machine's InternalIP is enough to find it
    (the real reconciler falls back to `<InternalIP>:2379` before it can read the
    etcd Pod's advertised URL).
    """

    def __init__(self, *, standard_port: bool = False) -> None:
        from kcp.certs import new_certificate_authority
        from kcp.testing.etcd_cluster import EtcdCluster

        self.ca = new_certificate_authority("kcp-bench-etcd-ca", algorithm="rsa-2048")
        self._addresses: Any = None
        host = "127.0.0.1"
        cluster_type: Any = EtcdCluster
        if standard_port:
            from kcp.sim.addresses import LoopbackAddresses

            self._addresses = LoopbackAddresses()
            # 10250 too: the kubelet of the Node that stands for it serves there.
            host = self._addresses.allocate([ETCD_CLIENT_PORT, KUBELET_PORT])

            class StandardPortEtcd(EtcdCluster):
                def _assign_ports(self) -> None:
                    super()._assign_ports()
                    for member in self.members:
                        member.client_port = ETCD_CLIENT_PORT

            cluster_type = StandardPortEtcd
        self.host = host
        # A name of its own: member names become Node names, and two scenarios in one
        # management cluster must not find each other's Node and etcd Pod.
        name = f"kcp-bench-etcd-{uuid.uuid4().hex[:6]}"
        self.cluster = cluster_type(self.ca, members=1, host=host, name=name)

    def __enter__(self) -> SharedEtcd:
        try:
            self.cluster.start()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop()
        self._release()

    def _release(self) -> None:
        if self._addresses is not None:
            self._addresses.close()
            self._addresses = None

    @property
    def endpoints(self) -> list[str]:
        return list(self.cluster.endpoints)

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.cluster.members if m.pid is not None]


def steady_workload(env: Any, etcd: SharedEtcd) -> SteadyWorkload:
    """The prepared workload side for `kcp run` (Node, Pods, Secret data)."""
    workload = SteadyWorkload.for_environment(env, etcd)
    workload.prepare(etcd.ca)
    return workload


def _owner(obj: dict[str, Any], *, controller: bool) -> dict[str, Any]:
    metadata = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _b64(value: bytes) -> str:
    import base64

    return base64.b64encode(value).decode("ascii")


def _token() -> str:
    return uuid.uuid4().hex[:12]
