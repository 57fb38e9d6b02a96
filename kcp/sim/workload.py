"""What a kubelet and kubeadm write into a workload cluster for one control-plane node.

A `Node` (Ready, with the machine's address and provider ID, the control-plane
role label and taint) and, in `kube-system`, the mirror Pods of the four static
control-plane pods kubeadm installs: `kube-apiserver-<node>`,
`kube-controller-manager-<node>`, `kube-scheduler-<node>` and `etcd-<node>`,
labelled `component=<name>,tier=control-plane`. Their status follows the
machine's real processes (a stopped etcd makes `etcd-<node>` not ready), which
is what kcp's per-machine pod conditions read. Only etcd and kube-apiserver
run for real; the controller manager and the scheduler are always reported
running. `publish` creates (or brings up to date) what `kubeadm init` uploads,
as `kcp.sim.kubeadm_init.init_objects` and `kcp.sim.kubeadm_addons.addon_objects` list it.
The kubelet renews its Node's Lease (`kcp.sim.node_lifecycle`) and posts `Ready` again
after an outage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kcp.api.conditions import rfc3339
from kcp.api.groups import NODE, POD
from kcp.rest import ApiError, Kube
from kcp.sim.kubeadm_init import WorkloadObject
from kcp.sim.kubelet_server import KUBELET_PORT
from kcp.sim.node_lifecycle import renew_lease
from kcp.sim.objects import create_if_absent

__all__ = [
    "COMPONENTS",
    "ContainerState",
    "Kubelet",
    "mirror_pod",
    "node_object",
    "pod_status",
    "publish",
]

SYSTEM_NAMESPACE = "kube-system"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_ETCD_VERSION = "3.6.4-0"


@dataclass(frozen=True)
class ContainerState:
    """What the kubelet reports about one static pod's container."""

    running: bool
    ready: bool
    restarts: int = 0
    started_at: datetime | None = None
    reason: str = ""
    """Why it is not running (`CrashLoopBackOff`, `Error`), empty while it runs."""


def _image(component: str, version: str) -> str:
    tag = _ETCD_VERSION if component == "etcd" else version
    return f"registry.k8s.io/{component}:{tag}"


def node_object(node_name: str, address: str, provider_id: str, version: str) -> dict[str, Any]:
    """The Node a kubelet registers on a kubeadm control-plane machine."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": {
                "kubernetes.io/hostname": node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                CONTROL_PLANE_ROLE: "",
                "node.kubernetes.io/exclude-from-external-load-balancers": "",
            },
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "providerID": provider_id,
            "taints": [{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}],
        },
    }


def node_status(node_name: str, address: str, version: str, now: datetime) -> dict[str, Any]:
    """A Ready node's status: addresses, the kubelet's port, capacity, node info, conditions.

    The API server proxies a Pod's port-forward to `InternalIP:kubeletEndpoint.Port`.
    """
    stamp = rfc3339(now)

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    return {
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"},
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"},
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "nodeInfo": {
            "machineID": hashlib.md5(node_name.encode(), usedforsecurity=False).hexdigest(),
            "systemUUID": hashlib.md5(address.encode(), usedforsecurity=False).hexdigest(),
            "bootID": hashlib.md5(stamp.encode(), usedforsecurity=False).hexdigest(),
            "kernelVersion": "kcp-sim",
            "osImage": "kcp local simulator",
            "containerRuntimeVersion": "kcp-sim://0",
            "kubeletVersion": version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def mirror_pod(
    component: str, node_name: str, node_uid: str, address: str, version: str
) -> dict[str, Any]:
    """The mirror Pod of one static control-plane pod on `node_name`."""
    config_hash = hashlib.sha256(f"{component}/{node_name}/{version}".encode()).hexdigest()[:32]
    annotations = {
        MIRROR_ANNOTATION: config_hash,
        "kubernetes.io/config.hash": config_hash,
        "kubernetes.io/config.source": "file",
    }
    if component == "kube-apiserver":
        annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] = (
            f"{address}:6443"
        )
    if component == "etcd":
        annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"] = f"https://{address}:2379"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{component}-{node_name}",
            "namespace": SYSTEM_NAMESPACE,
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": node_name,
                    "uid": node_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": node_name,
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "containers": [{"name": component, "image": _image(component, version)}],
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
        },
    }


def pod_status(
    component: str, address: str, version: str, state: ContainerState, now: datetime
) -> dict[str, Any]:
    """A static pod's status as the kubelet reports it for `state`."""
    started = rfc3339(state.started_at or now)
    ready = "True" if state.ready else "False"
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
        {"type": "Ready", "status": ready, "lastTransitionTime": started},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": started},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
    ]
    container_state: dict[str, Any]
    if state.running:
        container_state = {"running": {"startedAt": started}}
    else:
        container_state = {
            "waiting": {"reason": state.reason or "CrashLoopBackOff", "message": "simulated"}
        }
    image = _image(component, version)
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": address,
        "hostIPs": [{"ip": address}],
        "podIP": address,
        "podIPs": [{"ip": address}],
        "startTime": started,
        "containerStatuses": [
            {
                "name": component,
                "image": image,
                "imageID": image,
                "containerID": f"kcp-sim://{component}-{address}",
                "ready": state.ready,
                "started": state.running,
                "restartCount": state.restarts,
                "state": container_state,
            }
        ],
    }


_MUTABLE = ("data", "stringData", "rules", "subjects")
"""What `publish` brings up to date in an object that exists (roleRef and type are immutable)."""


def publish(kube: Kube, objects: Sequence[WorkloadObject], *, update: bool = True) -> None:
    """Create each object, or update one that exists: kubeadm's create-or-update, idempotent.

    With `update` False an object that exists is left as it is (kubeadm's add-ons, which the
    control plane's controller may have changed since)."""
    for resource, namespace, body in objects:
        if create_if_absent(kube, resource, namespace, body) is not None or not update:
            continue
        patch = {key: body[key] for key in _MUTABLE if key in body}
        if patch:
            kube.merge_patch(resource, namespace, str(body["metadata"]["name"]), patch)


class Kubelet:
    """Registers one node and its mirror pods, and keeps the pods' status current."""

    def __init__(
        self, kube: Kube, *, node_name: str, address: str, provider_id: str, version: str
    ) -> None:
        self.kube = kube
        self.node_name = node_name
        self.address = address
        self.provider_id = provider_id
        self.version = version
        self._sent: dict[str, ContainerState] = {}
        self.registered = False

    def register(self, states: dict[str, ContainerState]) -> None:
        """Create the Node and its mirror pods (idempotent) and report `states`."""
        now = datetime.now(UTC)
        node = self.kube.get(NODE, None, self.node_name)
        if node is None:
            create_if_absent(
                self.kube,
                NODE,
                None,
                node_object(self.node_name, self.address, self.provider_id, self.version),
            )
        self.kube.merge_patch(
            NODE,
            None,
            self.node_name,
            {"status": node_status(self.node_name, self.address, self.version, now)},
            subresource="status",
        )
        node = self.kube.get(NODE, None, self.node_name)
        if node is None:
            raise ApiError(404, "NotFound", f"node {self.node_name} vanished after registration")
        uid = str(node["metadata"]["uid"])
        for component in COMPONENTS:
            pod = mirror_pod(component, self.node_name, uid, self.address, self.version)
            create_if_absent(self.kube, POD, SYSTEM_NAMESPACE, pod)
        self._sent.clear()
        self.sync(states)
        renew_lease(self.kube, self.node_name, uid, now)
        self.registered = True

    def heartbeat(self) -> None:
        """Renew the Node's Lease, and post `Ready` again if the Node was marked unreachable."""
        now = datetime.now(UTC)
        node = self.kube.get(NODE, None, self.node_name)
        if node is None:
            return
        renew_lease(self.kube, self.node_name, str(node["metadata"]["uid"]), now)
        self._forget_stale_reports()
        ready = next(
            (
                x.get("status")
                for x in (node.get("status") or {}).get("conditions") or []
                if x.get("type") == "Ready"
            ),
            None,
        )
        if ready != "True":
            self.kube.merge_patch(
                NODE,
                None,
                self.node_name,
                {"status": node_status(self.node_name, self.address, self.version, now)},
                subresource="status",
            )

    def _forget_stale_reports(self) -> None:
        """Compare what the API server holds with what was sent, as a kubelet's status manager
        does: a report a late, older request overwrote is sent again at the next sync."""
        pods = self.kube.list(
            POD, SYSTEM_NAMESPACE, field_selector=f"spec.nodeName={self.node_name}"
        )
        held = {str(p["metadata"]["name"]): p for p in pods}
        for component, sent in list(self._sent.items()):
            statuses = ((held.get(f"{component}-{self.node_name}") or {}).get("status") or {}).get(
                "containerStatuses"
            ) or [{}]
            server = statuses[0]
            if (server.get("ready"), server.get("started"), server.get("restartCount")) != (
                sent.ready,
                sent.running,
                sent.restarts,
            ):
                self._sent.pop(component, None)

    def sync(self, states: dict[str, ContainerState]) -> None:
        """Report pod states that changed since last reported."""
        now = datetime.now(UTC)
        for component, state in states.items():
            if self._sent.get(component) == state:
                continue
            self.kube.merge_patch(
                POD,
                SYSTEM_NAMESPACE,
                f"{component}-{self.node_name}",
                {"status": pod_status(component, self.address, self.version, state, now)},
                subresource="status",
            )
            self._sent[component] = state

    def deregister(self) -> None:
        """Delete the mirror pods and the Node (the workload has no garbage collector)."""
        for component in COMPONENTS:
            name = f"{component}-{self.node_name}"
            self.kube.delete(POD, SYSTEM_NAMESPACE, name, grace_period_seconds=0)
        self.kube.delete(NODE, None, self.node_name)
        self.registered = False
