"""Node heartbeats and what a workload cluster's node lifecycle controller makes of them.

A real kubelet renews its Node's Lease in `kube-node-lease` every few seconds
and posts the Node's status when it changes; the node lifecycle controller of
kube-controller-manager (on a control-plane machine of the same cluster) marks
a Node whose Lease has not been renewed for `--node-monitor-grace-period` as
unreachable: its `Ready`, `MemoryPressure`, `DiskPressure` and `PIDPressure`
conditions become Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node
status.") and it gets the `node.kubernetes.io/unreachable` taints. A kubelet
that comes back posts `Ready=True` again and the taints go. This is what a
MachineHealthCheck watching `Ready` sees of a machine whose node agent died.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kcp.api.conditions import rfc3339
from kcp.api.groups import LEASE, NODE
from kcp.api.objects import parse_time
from kcp.rest import ApiError, Kube
from kcp.sim.objects import create_if_absent

__all__ = [
    "LEASE_DURATION_SECONDS",
    "LEASE_NAMESPACE",
    "UNREACHABLE_TAINT",
    "NodeMonitor",
    "lease_object",
    "node_is_stale",
    "renew_lease",
    "unknown_conditions",
]

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
"""What a kubelet writes into its Lease's `leaseDurationSeconds`."""
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
_UNKNOWN_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
_UNKNOWN_REASON = "NodeStatusUnknown"
_UNKNOWN_MESSAGE = "Kubelet stopped posting node status."


def _micro_time(moment: datetime) -> str:
    """`metav1.MicroTime` as the API server writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_object(node_name: str, node_uid: str, now: datetime) -> dict[str, Any]:
    """The Lease a kubelet keeps for its Node (owned by the Node, as the kubelet sets it)."""
    return {
        "apiVersion": LEASE.api_version,
        "kind": LEASE.kind,
        "metadata": {
            "name": node_name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": _micro_time(now),
        },
    }


def _condition(node: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def node_is_stale(
    node: Mapping[str, Any], lease: Mapping[str, Any] | None, now: datetime, grace: timedelta
) -> bool:
    """Whether neither the Node's heartbeat nor its Lease was renewed within `grace`."""
    ready = _condition(node, "Ready") or {}
    seen = [parse_time(ready.get("lastHeartbeatTime"))]
    if lease is not None:
        seen.append(parse_time((lease.get("spec") or {}).get("renewTime")))
    latest = max((t for t in seen if t is not None), default=None)
    return latest is None or now - latest > grace


def unknown_conditions(node: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The Node's conditions as the node lifecycle controller leaves an unreachable Node."""
    stamp = rfc3339(now)
    result: list[dict[str, Any]] = []
    for condition in (node.get("status") or {}).get("conditions") or []:
        updated = dict(condition)
        if updated.get("type") in _UNKNOWN_TYPES and updated.get("status") != "Unknown":
            updated.update(
                status="Unknown",
                reason=_UNKNOWN_REASON,
                message=_UNKNOWN_MESSAGE,
                lastTransitionTime=stamp,
            )
        result.append(updated)
    return result


def _taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(t) for t in (node.get("spec") or {}).get("taints") or []]


def renew_lease(kube: Kube, node_name: str, node_uid: str, now: datetime) -> None:
    """What a kubelet does every few seconds: renew its Node's Lease (created if missing)."""
    lease = lease_object(node_name, node_uid, now)
    try:
        kube.merge_patch(LEASE, LEASE_NAMESPACE, node_name, {"spec": lease["spec"]})
    except ApiError as error:
        if not error.not_found:
            raise
        create_if_absent(kube, LEASE, LEASE_NAMESPACE, lease)


class NodeMonitor:
    """One cluster's node lifecycle controller: a look every `period` seconds at most."""

    def __init__(self, *, grace: float, period: float) -> None:
        self.grace = timedelta(seconds=grace)
        self.period = period
        self._last = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether it is time for a look (and, if so, the look is now taken)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.period:
                return False
            self._last = now
            return True

    def check(self, kube: Kube, now: datetime | None = None) -> list[str]:
        """Mark Nodes whose kubelet went silent unreachable, un-taint those back; the marked."""
        now = now or datetime.now(UTC)
        leases = {
            str(lease["metadata"]["name"]): lease for lease in kube.list(LEASE, LEASE_NAMESPACE)
        }
        marked: list[str] = []
        for node in kube.list(NODE):
            name = str(node["metadata"]["name"])
            ready = (_condition(node, "Ready") or {}).get("status")
            taints = _taints(node)
            unreachable = [t for t in taints if t.get("key") == UNREACHABLE_TAINT]
            if ready in ("True", "False") and node_is_stale(
                node, leases.get(name), now, self.grace
            ):
                kube.merge_patch(
                    NODE,
                    None,
                    name,
                    {"status": {"conditions": unknown_conditions(node, now)}},
                    subresource="status",
                )
                if not unreachable:
                    added = [
                        {"key": UNREACHABLE_TAINT, "effect": effect, "timeAdded": rfc3339(now)}
                        for effect in ("NoSchedule", "NoExecute")
                    ]
                    kube.merge_patch(NODE, None, name, {"spec": {"taints": taints + added}})
                marked.append(name)
            elif ready == "True" and unreachable:
                kept = [t for t in taints if t.get("key") != UNREACHABLE_TAINT]
                kube.merge_patch(NODE, None, name, {"spec": {"taints": kept or None}})
        return marked
