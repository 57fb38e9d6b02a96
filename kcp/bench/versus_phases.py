"""The scenarios of `kcp bench versus`, run against one contender's `RealFleet`.

Each phase returns its figures as a dict, or raises `PhaseError` with what went
wrong (the caller records it; the next phase still runs). A `Window` measures
the contender over a phase from outside: CPU from `/proc`, reconciles from its
metrics, requests from the management API server's audit log by its user,
port-forwards from the node agents' logs, etcd quorum samples.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kcp.bench import procstat
from kcp.bench.observer import GenerationObserver, latency_ms
from kcp.bench.versus_counts import AuditCounter, contender_requests
from kcp.bench.versus_fleet import (
    ClusterShape,
    QuorumWatch,
    RealFleet,
    is_available,
    not_available_reason,
)

__all__ = [
    "CHANGE_LABEL",
    "UPGRADE_VERSION",
    "PhaseError",
    "Window",
    "change_every_cluster",
    "kind_difference",
    "rollout_and_scale_up",
    "settle",
    "steady",
]

CHANGE_LABEL = "bench.kcp.x-k8s.io/change"
"""Set in every KubeadmControlPlane's `spec.machineTemplate.metadata.labels`: both
controllers propagate it to the Machines in place (no rollout)."""
UPGRADE_VERSION = "v1.34.5"
_POLL = 1.0


class PhaseError(RuntimeError):
    """A phase could not finish: clusters not Available, a change never observed."""


@dataclass
class Window:
    """What the contender did between `open()` and `close()`."""

    fleet: RealFleet
    quorum: QuorumWatch
    audit: AuditCounter
    started: float
    cpu: float
    reconciles: float
    requests: int
    requests_by_kind: dict[str, int]
    port_forwards: dict[str, int]
    quorum_at: tuple[int, int]
    workload_requests: dict[str, int]
    workload_kinds: dict[str, int]

    @classmethod
    def open(cls, fleet: RealFleet, quorum: QuorumWatch, audit: AuditCounter) -> Window:
        return cls(
            fleet,
            quorum,
            audit,
            time.monotonic(),
            procstat.cpu_seconds(fleet.pid),
            fleet.reconciles(),
            *audit.of(fleet.contender.user),
            fleet.port_forwards.poll(),
            quorum.snapshot(),
            fleet.workload_requests.poll(),
            fleet.workload_requests.kinds_of(fleet.contender.program),
        )

    def close(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        cpu = procstat.cpu_seconds(self.fleet.pid) - self.cpu
        reconciles = self.fleet.reconciles() - self.reconciles
        total, by_kind = self.audit.of(self.fleet.contender.user)
        requests = total - self.requests
        forwards = self.fleet.port_forwards.poll()
        samples, lost = self.quorum.snapshot()
        workload = kind_difference(self.fleet.workload_requests.poll(), self.workload_requests)
        workload_kinds = kind_difference(
            self.fleet.workload_requests.kinds_of(self.fleet.contender.program),
            self.workload_kinds,
        )
        minutes = wall / 60.0
        return {
            "window_seconds": round(wall, 1),
            "cpu_cores": round(cpu / wall, 3),
            "reconciles": int(reconciles),
            "cpu_ms_per_reconcile": round(1000 * cpu / reconciles, 2) if reconciles >= 1 else None,
            "requests_per_minute": round(requests / minutes, 1),
            "requests": requests,
            "requests_by_kind": kind_difference(by_kind, self.requests_by_kind),
            "port_forwards_per_minute": round(
                (sum(forwards.values()) - sum(self.port_forwards.values())) / minutes, 1
            ),
            "port_forwards_by_pod": {
                k: v - self.port_forwards.get(k, 0) for k, v in forwards.items()
            },
            "workload_requests_per_minute": round(
                contender_requests(workload, self.fleet.contender.program) / minutes, 1
            ),
            "workload_requests_by_agent": workload,
            "workload_requests_by_kind": workload_kinds,
            "quorum_samples": samples - self.quorum_at[0],
            "quorum_lost_samples": lost - self.quorum_at[1],
        }


def kind_difference(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """The requests by kind made between two snapshots, most frequent first (none left out)."""
    grown = {k: v - before.get(k, 0) for k, v in now.items() if v > before.get(k, 0)}
    return dict(sorted(grown.items(), key=lambda item: (-item[1], item[0])))


def _wait_available(fleet: RealFleet, timeout: float, what: str) -> float:
    """Seconds until every control plane is Available; PhaseError with the laggards' state."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        planes = fleet.control_planes()
        pending = [p for p in planes.values() if not is_available(p)]
        if planes and not pending:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            reasons = "; ".join(not_available_reason(p) for p in pending[:3])
            raise PhaseError(
                f"{what}: {len(pending)} of {len(planes)} control planes not Available after "
                f"{timeout:.0f}s: {reasons}"
            )
        time.sleep(_POLL)


def _still_available(fleet: RealFleet, timeout: float, what: str) -> dict[str, str]:
    """{} if every control plane is Available within `timeout`, else why not (the phase's
    figures are kept: they were measured, on a fleet not all Available)."""
    try:
        _wait_available(fleet, timeout, what)
    except PhaseError as error:
        return {"available_error": str(error)}
    return {}


def settle(window: Window, shapes: list[ClusterShape], timeout: float) -> dict[str, Any]:
    """Create the clusters; every control plane Available."""
    window.fleet.create(shapes)
    seconds = _wait_available(window.fleet, timeout, "create and settle")
    return {"seconds_to_available": round(seconds, 1), **window.close()}


def steady(window: Window, seconds: float) -> dict[str, Any]:
    """Nothing changes for `seconds`; then the process's size."""
    time.sleep(seconds)
    figures = window.close()
    fleet = window.fleet
    sample = procstat.sample(fleet.pid)
    figures.update(threads=sample.threads, goroutines=fleet.goroutines())
    figures.update(_still_available(fleet, 10.0, "after the steady window"))
    return figures


def change_every_cluster(
    window: Window, observer: GenerationObserver, timeout: float
) -> dict[str, Any]:
    """A label in every machine template: status (observedGeneration) and Machines follow."""
    fleet = window.fleet
    token = uuid.uuid4().hex[:8]
    before = {m["metadata"]["name"] for m in fleet.machines()}
    names = sorted(fleet.control_planes())
    sent: dict[str, float] = {}
    targets: dict[str, int] = {}
    for name in names:
        sent[name] = time.monotonic()
        targets[name] = fleet.patch_control_plane(
            name, {"spec": {"machineTemplate": {"metadata": {"labels": {CHANGE_LABEL: token}}}}}
        )
    try:
        observed = observer.wait_observed(targets, timeout)
    except TimeoutError as error:
        raise PhaseError(f"status never reflected the change: {error}") from error
    labelled: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(labelled) < len(names):
        now = time.monotonic()
        by_cluster: dict[str, list[dict[str, Any]]] = {}
        for machine in fleet.machines():
            cluster = (machine["spec"] or {}).get("clusterName", "")
            by_cluster.setdefault(cluster, []).append(machine)
        for name in names:
            machines = by_cluster.get(name, [])
            if (
                name not in labelled
                and machines
                and all(
                    (m["metadata"].get("labels") or {}).get(CHANGE_LABEL) == token for m in machines
                )
            ):
                labelled[name] = now
        if now > deadline:
            raise PhaseError(
                f"the label reached the Machines of {len(labelled)} of {len(names)} clusters "
                f"in {timeout:.0f}s"
            )
        time.sleep(0.25)
    figures = window.close()
    created = {m["metadata"]["name"] for m in fleet.machines()} - before
    return {
        **_still_available(fleet, 30.0, "after the change"),
        "status_latency_ms": latency_ms(observed, sent),
        "machines_latency_ms": latency_ms(labelled, sent),
        "machines_created": len(created),
        **figures,
    }


@dataclass
class _Convergence:
    """One control plane driven to a new state: when it got there, and the Machines made."""

    cluster: str
    done: Callable[[dict[str, Any], list[dict[str, Any]]], bool]
    before: set[str]
    seen: set[str]
    seconds: float | None = None
    last_state: str = ""

    def figures(self, timeout: float, what: str) -> dict[str, Any]:
        created = len(self.seen - self.before)
        if self.seconds is None:
            return {
                "error": f"{what} of {self.cluster} not finished after {timeout:.0f}s "
                f"({created} Machines created): {self.last_state}"
            }
        return {"seconds": round(self.seconds, 1), "machines_created": created}


def rollout_and_scale_up(
    window: Window,
    *,
    rollout_cluster: str,
    scale_cluster: str,
    replicas: int,
    timeout: float,
) -> dict[str, Any]:
    """At once: a version upgrade of one control plane (every Machine replaced, maxSurge 1)
    and a scale-up of another (new Machines join its etcd). Each is timed on its own; the
    window's figures cover both."""
    fleet = window.fleet

    def upgraded(plane: dict[str, Any], machines: list[dict[str, Any]]) -> bool:
        return len(machines) == (plane.get("spec") or {}).get("replicas") and all(
            (m.get("spec") or {}).get("version") == UPGRADE_VERSION for m in machines
        )

    def scaled(_plane: dict[str, Any], machines: list[dict[str, Any]]) -> bool:
        return len(machines) == replicas

    targets: dict[str, tuple[_Convergence, dict[str, Any], str]] = {}
    for key, cluster, done, patch, what in (
        ("rollout", rollout_cluster, upgraded, {"version": UPGRADE_VERSION}, "the rollout"),
        ("scale_up", scale_cluster, scaled, {"replicas": replicas}, "the scale-up"),
    ):
        names = {m["metadata"]["name"] for m in fleet.machines_of(cluster)}
        targets[key] = (_Convergence(cluster, done, names, set(names)), {"spec": patch}, what)
    started = time.monotonic()
    for convergence, patch, _what in targets.values():
        fleet.patch_control_plane(convergence.cluster, patch)
    deadline = started + timeout
    pending = [t[0] for t in targets.values()]
    while pending and time.monotonic() < deadline:
        time.sleep(_POLL)
        planes, machines = fleet.control_planes(), fleet.machines()
        for convergence in list(pending):
            mine = [m for m in machines if _cluster_of(m) == convergence.cluster]
            convergence.seen |= {m["metadata"]["name"] for m in mine}
            plane = planes.get(convergence.cluster)
            if plane is None:
                convergence.last_state = "the KubeadmControlPlane is gone"
                continue
            convergence.last_state = not_available_reason(plane)
            if is_available(plane) and convergence.done(plane, mine):
                convergence.seconds = time.monotonic() - started
                pending.remove(convergence)
    figures = window.close()
    for key, (convergence, _patch, what) in targets.items():
        figures[key] = convergence.figures(timeout, what)
    return figures


def _cluster_of(machine: dict[str, Any]) -> str:
    return str((machine.get("spec") or {}).get("clusterName") or "")
