"""The live table of `kcp sim` / `kcp dev`: per cluster, replicas, etcd members, key conditions.

Cluster API objects come from the management cluster (as `kcp status` reads
them); the etcd view comes from the simulator itself, which can ask the
members directly: who is listed, who answers `/health`, and whether a listed
member belongs to no machine any more (kcp did not remove it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from kcp.api import conditions as cond
from kcp.sim.cluster import SimCluster
from kcp.sim.etcd_member import EtcdJoinError, list_members
from kcp.sim.simulator import Simulator
from kcp.statusview.collect import collect
from kcp.statusview.tree import ClusterObjects, condition_badges

__all__ = ["MemberView", "etcd_members", "render_dashboard"]

_KEY_CONDITIONS = (
    cond.AVAILABLE,
    cond.INITIALIZED,
    cond.ETCD_CLUSTER_HEALTHY,
    cond.CONTROL_PLANE_COMPONENTS_HEALTHY,
    cond.MACHINES_READY,
    cond.ROLLING_OUT,
    cond.SCALING_UP,
    cond.SCALING_DOWN,
    cond.REMEDIATING,
)


@dataclass(frozen=True)
class MemberView:
    """One etcd member as the simulator sees it."""

    name: str
    member_id: int
    healthy: bool
    machine: str | None
    """The machine running it; None for a listed member no machine runs (a leftover)."""


def etcd_members(sim_cluster: SimCluster) -> list[MemberView]:
    """The member list from a running member, with each member's health."""
    tls = sim_cluster.etcd_tls
    endpoints = sim_cluster.etcd_endpoints()
    if tls is None or not endpoints:
        return []
    try:
        members = list_members(endpoints, tls)
    except EtcdJoinError:
        return []
    by_peer = {
        m.etcd.peer_url: m for m in list(sim_cluster.machines.values()) if m.etcd is not None
    }
    views: list[MemberView] = []
    for member in members:
        machine = next((by_peer[u] for u in member.peer_urls if u in by_peer), None)
        healthy = machine is not None and machine.etcd is not None and machine.etcd.healthy()
        views.append(
            MemberView(
                name=member.name or "(not started)",
                member_id=member.id,
                healthy=healthy,
                machine=machine.name if machine is not None else None,
            )
        )
    return views


def _count(status: dict[str, Any], key: str) -> str:
    value = status.get(key)
    return str(value) if isinstance(value, int) else "-"


def _cluster_lines(objects: ClusterObjects, simulator: Simulator) -> list[str]:
    meta = objects.cluster.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    endpoint = (objects.cluster.get("spec") or {}).get("controlPlaneEndpoint") or {}
    where = f"{endpoint.get('host')}:{endpoint.get('port')}" if endpoint.get("host") else "-"
    cp = objects.control_plane or {}
    status = cp.get("status") or {}
    desired = (cp.get("spec") or {}).get("replicas", "-") if cp else "-"
    lines = [
        f"{namespace}/{name}  endpoint {where}  replicas desired {desired} · "
        f"ready {_count(status, 'readyReplicas')} · up-to-date {_count(status, 'upToDateReplicas')}"
    ]
    badges = condition_badges(cp, _KEY_CONDITIONS, {}) if cp else ""
    lines.append(f"  conditions: {badges or '(none reported yet)'}")
    infra_ready = cond.get_condition(objects.infrastructure or {}, cond.READY)
    if infra_ready is not None and infra_ready.get("status") != cond.TRUE:
        lines.append(f"  infrastructure: {infra_ready.get('reason')}: {infra_ready.get('message')}")
    sim_cluster = None
    with contextlib.suppress(Exception):
        sim_cluster = simulator.cluster(namespace, name)
    if sim_cluster is None:
        lines.append("  etcd: (no simulated machines yet)")
        return lines
    members = etcd_members(sim_cluster)
    healthy = sum(1 for m in members if m.healthy)
    lines.append(f"  etcd: {healthy}/{len(members)} members healthy")
    for member in members:
        mark = "✓" if member.healthy else "✗"
        owner = f"machine {member.machine}" if member.machine else "NO MACHINE (leftover member)"
        lines.append(f"    {mark} {member.name:<32} {member.member_id:016x}  {owner}")
    for machine in sorted(sim_cluster.machines.values(), key=lambda m: m.name):
        faults = ", ".join(f"{c.value} {f.value}" for c, f in machine.faults.items())
        pids = " ".join(f"{k}={v}" for k, v in machine.pids().items()) or "no processes"
        extra = f"  FAULTS: {faults}" if faults else ""
        lines.append(f"    machine {machine.name:<28} {machine.address or '-':<16} {pids}{extra}")
    return lines


def render_dashboard(api_client: Any, simulator: Simulator, namespace: str | None = None) -> str:
    """The table for every cluster (of `namespace`, or all)."""
    found = collect(api_client, namespace)
    if not found:
        return "No clusters yet.\n"
    blocks = ["\n".join(_cluster_lines(objects, simulator)) for objects in found]
    return "\n\n".join(blocks) + "\n"
