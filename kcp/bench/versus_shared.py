"""`kcp bench versus` at 100 and 1000 clusters: both KCPs on the cheap shared fleet.

Real simulated machines cost a process pair each, so the large sizes run on the
fleet `kcp bench scale` uses (`kcp.bench.versus_shared_fleet`): every cluster's
etcd is one real etcd and every workload API server the management API server.
Each contender in turn (one at a time: a fleet of 1000 is all the machine holds)
gets a fresh fleet of N clusters in a namespace of its own, on a management
cluster whose audit log counts its requests by user, and is measured over:

- settle: controller start until every control plane is Available (replicas
  ready and up to date);
- steady: a fixed window in which nothing changes;
- change: every control plane's spec changed at once (`Fleet.bump`: an
  annotation in the machine template, no rollout), until each one's
  `observedGeneration` reflects it (p50/p99 from the benchmark's own watch).

A contender that fails a phase has it reported with its error, never dropped.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcp.bench import procstat
from kcp.bench.observer import GenerationObserver, latency_ms
from kcp.bench.progress import Progress
from kcp.bench.versus_counts import AuditCounter
from kcp.bench.versus_fleet import CONTENDERS, Contender, is_available, not_available_reason
from kcp.bench.versus_report import render
from kcp.bench.versus_shared_fleet import (
    MachineChangeWatch,
    SharedFleet,
    SharedWindow,
    workload_user,
)

__all__ = ["SHARED", "SharedSettings", "brief", "measure", "summary"]

SHARED = (
    "shared by every cluster of a fleet: one etcd (one member, one CA), the management API "
    "server standing in for every workload API server (one Node, its four static Pods, one "
    "kubeadm-config), one kubelet for port-forwards; per cluster: Cluster, "
    "KubeadmControlPlane, LocalMachineTemplate, one Machine on that Node, Secrets ca/etcd/sa/"
    "proxy/kubeconfig; no Cluster API core or infrastructure provider runs (the fleet writes "
    "the statuses they would); contenders one at a time, each on a fresh fleet"
)
_BUMP_WORKERS = 8
_POLL = 2.0


@dataclass(frozen=True)
class SharedSettings:
    sizes: tuple[int, ...] = (100, 1000)
    contenders: tuple[str, ...] = ("kcp", "capi", "capi-tuned")
    steady_seconds: float = 60.0
    keep_logs: Path | None = None

    @staticmethod
    def settle_timeout(size: int) -> float:
        """A bound for a stuck start, not a figure (kcp needs ~200 s for 1000 on 2 cores)."""
        return 240.0 + 0.6 * size

    @staticmethod
    def change_timeout(size: int) -> float:
        return 120.0 + 0.3 * size


class PhaseError(RuntimeError):
    """A phase could not finish: control planes not Available, a change never observed."""


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _wait_available(observer: GenerationObserver, size: int, timeout: float, what: str) -> float:
    """Seconds until all `size` control planes are Available, read from the benchmark's
    watch (no list of a thousand objects every poll)."""
    started = time.monotonic()
    while True:
        planes = observer.informer.list()
        pending = [p for p in planes if not is_available(p)]
        if len(planes) >= size and not pending:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            reasons = "; ".join(not_available_reason(p) for p in pending[:3])
            raise PhaseError(
                f"{what}: {len(pending)} of {len(planes)} control planes not Available after "
                f"{timeout:.0f}s: {reasons}"
            )
        time.sleep(_POLL)


def _still_available(observer: GenerationObserver, size: int, what: str) -> dict[str, str]:
    try:
        _wait_available(observer, size, 60.0, what)
    except PhaseError as error:
        return {"available_error": str(error)}
    return {}


def _settle(
    shared: SharedFleet, audit: AuditCounter, observer: GenerationObserver, size: int
) -> dict[str, Any]:
    """Start the controller on the created fleet; every control plane Available."""
    window = SharedWindow(shared, audit)
    shared.start_controller()
    _wait_available(observer, size, SharedSettings.settle_timeout(size), "start")
    return {"seconds_to_available": round(time.monotonic() - window.started, 1), **window.close()}


def _steady(
    shared: SharedFleet, audit: AuditCounter, observer: GenerationObserver, seconds: float
) -> dict[str, Any]:
    time.sleep(5.0)  # the reconciles the last status writes trigger
    window = SharedWindow(shared, audit)
    time.sleep(seconds)
    figures = window.close()
    sample = procstat.sample(shared.pid)
    figures.update(threads=sample.threads, goroutines=shared.goroutines())
    figures.update(_still_available(observer, shared.size, "after the steady window"))
    return figures


def _change(
    shared: SharedFleet, audit: AuditCounter, observer: GenerationObserver
) -> dict[str, Any]:
    """Every control plane bumped at once; until each status reflects its new generation."""
    token = uuid.uuid4().hex[:12]
    with MachineChangeWatch(shared.env.api_client(), shared.namespace) as machines:
        machines.expect(token)
        return _change_all(shared, audit, observer, machines, token)


def _change_all(
    shared: SharedFleet,
    audit: AuditCounter,
    observer: GenerationObserver,
    machines: MachineChangeWatch,
    token: str,
) -> dict[str, Any]:
    fleet = shared.fleet
    window = SharedWindow(shared, audit)
    targets: dict[str, int] = {}
    sent: dict[str, float] = {}

    def bump(name: str) -> None:
        sent[name] = time.monotonic()
        targets[name] = fleet.bump(name, token)

    with ThreadPoolExecutor(_BUMP_WORKERS, thread_name_prefix="bench-bump") as pool:
        for future in [pool.submit(bump, n) for n in fleet.names()]:
            future.result()
    try:
        seen = observer.wait_observed(targets, SharedSettings.change_timeout(shared.size))
    except TimeoutError as error:
        raise PhaseError(f"status never reflected the change: {error}") from error
    try:
        labelled = machines.wait(shared.size, SharedSettings.change_timeout(shared.size))
    except TimeoutError as error:
        raise PhaseError(str(error)) from error
    figures = window.close()
    return {
        "status_latency_ms": latency_ms(seen, sent),
        "machines_latency_ms": latency_ms(labelled, sent),
        "seconds_to_observe_all": round(max(seen.values()) - min(sent.values()), 1),
        **figures,
        **_still_available(observer, shared.size, "after the change"),
    }


def run_contender(
    env: Any,
    audit: AuditCounter,
    contender: Contender,
    size: int,
    *,
    settings: SharedSettings,
    progress: Progress,
    last: bool = False,
) -> dict[str, Any]:
    """Every phase for `contender` on a fresh fleet of `size`; failures recorded, not raised.
    The `last` fleet of a run is left for the management cluster's teardown."""
    result: dict[str, Any] = {
        "contender": contender.name,
        "description": contender.description,
        "flags": list(contender.args),
        "phases": {},
    }
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        with SharedFleet(env, contender, size, progress, delete_objects=not last) as shared:
            result["namespace"] = shared.namespace
            result["fleet_create_seconds"] = round(time.monotonic() - started, 1)
            observer = GenerationObserver(env.api_client(), shared.namespace)
            observer.start()
            try:
                _run_phases(
                    shared, audit, observer, settings=settings, result=result, progress=progress
                )
            finally:
                observer.stop()
    except Exception as error:
        result["error"] = _error(error)
        for phase in ("settle", "steady", "change"):
            result["phases"].setdefault(phase, {"error": f"not run: {_error(error)}"})
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    # The machine is shared: its load says how far the figures may be off.
    result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def _run_phases(
    shared: SharedFleet,
    audit: AuditCounter,
    observer: GenerationObserver,
    *,
    settings: SharedSettings,
    result: dict[str, Any],
    progress: Progress,
) -> None:
    name, size = shared.contender.name, shared.size
    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("settle", lambda: _settle(shared, audit, observer, size)),
        ("steady", lambda: _steady(shared, audit, observer, settings.steady_seconds)),
        ("change", lambda: _change(shared, audit, observer)),
    ]
    for phase, run_phase in plan:
        progress.step(f"versus shared {size}: {name}: {phase}")
        if phase != "settle" and shared.controller is None:
            result["phases"][phase] = {"error": "the controller did not start"}
            continue
        try:
            result["phases"][phase] = run_phase()
        except Exception as error:
            progress.note(f"versus shared {size}: {name}: {phase} failed: {error}")
            result["phases"][phase] = {
                "error": _error(error),
                "traceback": traceback.format_exc(limit=4),
            }
    if shared.controller is not None:
        result["peak_rss_mib"] = round(procstat.sample(shared.pid).peak_rss / procstat.MIB, 1)


def measure(settings: SharedSettings, progress: Progress) -> dict[str, Any]:
    """Every size, every contender in turn, on one management cluster with an audit log."""
    from kcp.bench.versus import audited_cluster

    contenders = [CONTENDERS[name] for name in settings.contenders]
    users = [u for c in contenders for u in (c.user, workload_user(c))]
    started = time.monotonic()
    points: list[dict[str, Any]] = []
    with audited_cluster(progress, users, settings.keep_logs) as (env, audit):
        for size in settings.sizes:
            point_started = time.monotonic()
            results = []
            for contender in contenders:
                progress.step(f"versus shared {size}: {contender.name}: creating the fleet")
                results.append(
                    run_contender(
                        env,
                        audit,
                        contender,
                        size,
                        settings=settings,
                        progress=progress,
                        last=(size, contender) == (settings.sizes[-1], contenders[-1]),
                    )
                )
                progress.note(f"versus shared {size}: {brief(results[-1])}")
            points.append(
                {
                    "clusters": size,
                    "contenders": results,
                    "wall_seconds": round(time.monotonic() - point_started, 1),
                }
            )
    return {
        "sizes": list(settings.sizes),
        "steady_seconds": settings.steady_seconds,
        "points": points,
        "wall_seconds": round(time.monotonic() - started, 1),
        "fleet": SHARED,
    }


def brief(result: dict[str, Any]) -> str:
    """One contender's main figures on one line, shown as soon as it is done (a long run
    stopped early still leaves them in its output)."""
    import json

    keys = (
        "seconds_to_available",
        "cpu_cores",
        "cpu_ms_per_reconcile",
        "requests_per_minute",
        "workload_requests_per_minute",
        "port_forwards_per_minute",
        "threads",
        "goroutines",
        "status_latency_ms",
        "error",
        "available_error",
    )
    found = {
        phase: {k: v for k, v in figures.items() if k in keys}
        for phase, figures in (result.get("phases") or {}).items()
    }
    extra = {
        "peak_rss_mib": result.get("peak_rss_mib"),
        "wall": result.get("wall_seconds"),
        "load": result.get("load_average_1m"),
    }
    return f"{result['contender']}: {json.dumps({**found, **extra})}"


def summary(result: dict[str, Any]) -> str:
    """One table per size (both controllers' figures and kcp's ratios), then what is shared."""
    lines: list[str] = []
    for point in result["points"]:
        title = (
            f"versus: kcp vs Cluster API's KCP, {point['clusters']} clusters each on the cheap "
            f"shared fleet (one at a time; steady window {result['steady_seconds']:.0f} s; "
            f"{point['wall_seconds']:.0f} s)"
        )
        lines.append(render(point["contenders"], title))
        for contender in point["contenders"]:
            lines.append(
                f"  {contender['contender']} ({contender.get('description', '')}): fleet "
                f"created in {contender.get('fleet_create_seconds', '-')} s, "
                f"{contender.get('wall_seconds', '-')} s in all, load average (1 min) "
                f"{contender.get('load_average_1m', '-')} at start and end"
            )
    lines += [
        "  create+settle here: controller start on the created fleet until all Available; "
        "change all: every control plane's spec bumped at once (no rollout); workload requests "
        "include port-forwards",
        f"  fleet: {result['fleet']}",
    ]
    return "\n".join(lines)
