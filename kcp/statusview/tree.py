"""A `clusterctl describe`-like tree of one cluster, built from plain object dicts.

Cluster → its infrastructure cluster → its KubeadmControlPlane (replicas desired,
ready, up to date; key conditions) → the control-plane Machines (phase, node,
version, failure domain, the per-machine pod and etcd member conditions kcp
sets). Pure: no I/O, so it renders a fixture as well as a live cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kcp.api import conditions as cond
from kcp.api import labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView, parse_time

__all__ = ["ClusterObjects", "Row", "build_tree", "condition_badges"]

NEGATIVE_POLARITY = frozenset(
    {
        cond.ROLLING_OUT,
        cond.SCALING_UP,
        cond.SCALING_DOWN,
        cond.REMEDIATING,
        cond.DELETING,
        cond.PAUSED,
    }
)
"""Conditions that are noteworthy when True (something is going on)."""

KCP_CONDITIONS = (
    cond.AVAILABLE,
    cond.INITIALIZED,
    cond.CERTIFICATES_AVAILABLE,
    cond.ETCD_CLUSTER_HEALTHY,
    cond.CONTROL_PLANE_COMPONENTS_HEALTHY,
    cond.MACHINES_READY,
    cond.MACHINES_UP_TO_DATE,
    cond.ROLLING_OUT,
    cond.SCALING_UP,
    cond.SCALING_DOWN,
    cond.REMEDIATING,
    cond.DELETING,
    cond.PAUSED,
)

MACHINE_SHORT_NAMES = {
    cond.API_SERVER_POD_HEALTHY: "apiserver",
    cond.CONTROLLER_MANAGER_POD_HEALTHY: "controller-manager",
    cond.SCHEDULER_POD_HEALTHY: "scheduler",
    cond.ETCD_POD_HEALTHY: "etcd-pod",
    cond.ETCD_MEMBER_HEALTHY: "etcd-member",
}


@dataclass
class Row:
    """One line of the tree, with notes printed under it and its children below."""

    name: str
    ready: str = ""
    """True, False, Unknown or empty (the object reports no readiness)."""
    since: datetime | None = None
    """When `ready` last changed."""
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    children: list[Row] = field(default_factory=list)


@dataclass
class ClusterObjects:
    """Everything the tree of one cluster is made from."""

    cluster: Mapping[str, Any]
    infrastructure: Mapping[str, Any] | None = None
    control_plane: Mapping[str, Any] | None = None
    machines: Sequence[Mapping[str, Any]] = ()


def _condition(obj: Mapping[str, Any], condition_type: str) -> dict[str, Any] | None:
    return cond.get_condition(obj, condition_type)


def _ready(obj: Mapping[str, Any], *types: str) -> tuple[str, datetime | None]:
    for condition_type in types:
        found = _condition(obj, condition_type)
        if found is not None:
            return str(found.get("status", "")), parse_time(found.get("lastTransitionTime"))
    return "", None


def condition_badges(obj: Mapping[str, Any], types: Sequence[str], short: Mapping[str, str]) -> str:
    """`Available ✓ · EtcdClusterHealthy ✗ …` for the conditions of `types` the object has."""
    badges: list[str] = []
    for condition_type in types:
        found = _condition(obj, condition_type)
        if found is None:
            continue
        status = found.get("status")
        mark = {cond.TRUE: "✓", cond.FALSE: "✗"}.get(str(status), "?")
        if condition_type in NEGATIVE_POLARITY:
            if status != cond.TRUE:
                continue
            mark = "…"
        badges.append(f"{short.get(condition_type, condition_type)} {mark}")
    return " · ".join(badges)


def _problems(obj: Mapping[str, Any], types: Sequence[str], short: Mapping[str, str]) -> list[str]:
    """Messages of conditions in a state worth explaining (False, Unknown, or a True negative)."""
    notes: list[str] = []
    for condition_type in types:
        found = _condition(obj, condition_type)
        if found is None:
            continue
        status = found.get("status")
        worth = status == cond.TRUE if condition_type in NEGATIVE_POLARITY else status != cond.TRUE
        message = str(found.get("message") or found.get("reason") or "").strip()
        if worth and message:
            for line in message.splitlines():
                notes.append(f"{short.get(condition_type, condition_type)}: {line.strip()}")
    return notes


def _cluster_row(objects: ClusterObjects) -> Row:
    view = ClusterView(objects.cluster)
    ready, since = _ready(objects.cluster, cond.AVAILABLE, cond.READY)
    parts: list[str] = []
    endpoint = view.control_plane_endpoint
    parts.append(f"endpoint {endpoint[0]}:{endpoint[1]}" if endpoint else "no endpoint yet")
    parts.append(
        "infrastructure provisioned"
        if view.infrastructure_provisioned
        else "infrastructure pending"
    )
    parts.append(
        "control plane initialized"
        if view.control_plane_initialized
        else "control plane not initialized"
    )
    if view.paused or view.paused_annotation:
        parts.append("PAUSED")
    if view.is_deleting:
        parts.append("deleting")
    row = Row(f"Cluster/{view.name}", ready, since, " · ".join(parts))
    row.notes = _problems(objects.cluster, (cond.AVAILABLE, cond.READY), {})
    return row


def _infrastructure_row(infra: Mapping[str, Any]) -> Row:
    kind = str(infra.get("kind") or "Infrastructure")
    name = str((infra.get("metadata") or {}).get("name", ""))
    ready, since = _ready(infra, cond.READY)
    provisioned = (infra.get("status") or {}).get("initialization", {}).get("provisioned") is True
    row = Row(f"{kind}/{name}", ready, since, "provisioned" if provisioned else "provisioning")
    row.notes = _problems(infra, (cond.READY,), {})
    return row


def _control_plane_row(control_plane: Mapping[str, Any]) -> Row:
    view = KubeadmControlPlaneView(control_plane)
    status = control_plane.get("status") or {}
    ready, since = _ready(control_plane, cond.AVAILABLE)

    def count(key: str) -> int:
        value = status.get(key)
        return value if isinstance(value, int) else 0

    parts = [
        f"{count('readyReplicas')}/{view.replicas} ready",
        f"{count('upToDateReplicas')} up-to-date",
        f"{count('replicas')} machines",
    ]
    if count("availableReplicas") != count("readyReplicas"):
        parts.append(f"{count('availableReplicas')} available")
    version = view.status_version or view.version
    if version:
        parts.append(version)
    if view.is_deleting:
        parts.append("deleting")
    row = Row(f"KubeadmControlPlane/{view.name}", ready, since, " · ".join(parts))
    badges = condition_badges(control_plane, KCP_CONDITIONS, {})
    if badges:
        row.notes.append(badges)
    row.notes.extend(_problems(control_plane, KCP_CONDITIONS, {}))
    return row


def _machine_row(machine: Mapping[str, Any]) -> Row:
    view = MachineView(machine)
    ready, since = _ready(machine, cond.READY)
    parts = [view.phase or "Pending"]
    parts.append(f"node {view.node_name}" if view.node_name else "no node")
    if view.version:
        parts.append(view.version)
    if view.failure_domain:
        parts.append(view.failure_domain)
    address = next((a.address for a in view.addresses if a.type == "InternalIP"), None)
    if address:
        parts.append(address)
    up_to_date = _condition(machine, cond.UP_TO_DATE)
    if up_to_date is not None and up_to_date.get("status") != cond.TRUE:
        parts.append("not up-to-date")
    row = Row(f"Machine/{view.name}", ready, since, " · ".join(parts))
    badges = condition_badges(machine, cond.MACHINE_CONDITION_TYPES, MACHINE_SHORT_NAMES)
    if badges:
        row.notes.append(badges)
    row.notes.extend(
        _problems(machine, (*cond.MACHINE_CONDITION_TYPES, cond.READY), MACHINE_SHORT_NAMES)
    )
    return row


def build_tree(objects: ClusterObjects) -> Row:
    """The tree of one cluster; control-plane Machines under their KubeadmControlPlane."""
    root = _cluster_row(objects)
    if objects.infrastructure is not None:
        root.children.append(_infrastructure_row(objects.infrastructure))
    machines = sorted(objects.machines, key=lambda m: str((m.get("metadata") or {}).get("name")))
    owned: list[Mapping[str, Any]] = []
    others: list[Mapping[str, Any]] = []
    cp_label = None
    if objects.control_plane is not None:
        cp_name = str((objects.control_plane.get("metadata") or {}).get("name", ""))
        cp_label = labels.format_label_value(cp_name)
    for machine in machines:
        view = MachineView(machine)
        if cp_label is not None and view.is_control_plane and view.control_plane_name == cp_label:
            owned.append(machine)
        else:
            others.append(machine)
    if objects.control_plane is not None:
        cp_row = _control_plane_row(objects.control_plane)
        cp_row.children = [_machine_row(m) for m in owned]
        root.children.append(cp_row)
    root.children.extend(_machine_row(m) for m in others)
    return root


def age(since: datetime | None, now: datetime | None = None) -> str:
    """`5s`, `3m`, `2h`, `4d`: how long ago `since` was."""
    if since is None:
        return ""
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
