"""`kcp bench scale`: one controller, N/10 then N clusters, all sharing one real etcd.

For each size a fresh controller process (see `kcp.bench.controller`) is
started against the fleet (`kcp.bench.fleet`) and measured from outside
(`/proc` for CPU, RSS and threads; the benchmark's own watch for reconciles):

- `startup_seconds`: process start until every control plane is reconciled and
  reported etcd healthy (informer sync, one key per cluster, a certificate, an
  etcd check and a status write each);
- `steady_cpu_cores`: CPU over a quiet window (health probes, resyncs);
- `resync_seconds` / `resync_cpu_cores`: every control plane changed at once
  (a metadata bump: an annotation in `spec.machineTemplate.metadata`, a new
  generation, so each needs a reconcile and a status write; no rollout) until
  all are reconciled — heavier than a sync-period resync;
- `change_latency_ms`: single changes at a steady pace, each from the moment
  it is sent until its reconcile's status write is seen (p50/p99);
- `peak_rss_mib` (`VmHWM` since the process started, startup included) and
  `threads` (median over the steady window; `threads_max` the most seen), at
  both sizes.

The N/10 point is the same-run baseline: ratios say how each figure grows with
ten times the clusters (threads should not grow at all).
"""

from __future__ import annotations

import argparse
import random
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

from kcp.bench import table
from kcp.bench.controller import CONTROLLERS, resolve_controller, start_controller
from kcp.bench.environment import BenchEnvironment
from kcp.bench.fleet import ETCD_CLIENT_PORT, Fleet
from kcp.bench.fleet_run import FleetRunSettings, describe_fleet, watched_fleet
from kcp.bench.observer import GenerationObserver, latency_ms
from kcp.bench.procstat import MIB, Sampler, split_threads, tcp_connections, thread_names
from kcp.bench.progress import Progress
from kcp.bench.runner import Scenario, add_common_arguments, cluster_scenario, run_scenarios

__all__ = ["ScaleSettings", "add_arguments", "measure", "run", "scenario", "summary"]

RESYNC_LIMIT_SECONDS = 60.0
CPU_LIMIT_CORES = 1.0
RSS_LIMIT_MIB = 300.0
_BUMP_WORKERS = 8


@dataclass(frozen=True)
class ScaleSettings(FleetRunSettings):
    clusters: int = 1000
    steady_seconds: float = 65.0
    """Long enough for six probe rounds and one periodic re-read of every cluster's Secrets."""
    changes: int = 100
    change_rate: float = 10.0
    """Single changes per second while measuring change latency."""

    @classmethod
    def quick(cls) -> ScaleSettings:
        return cls(clusters=100, steady_seconds=8.0, changes=40)

    @property
    def sizes(self) -> list[int]:
        return sorted({max(1, self.clusters // 10), self.clusters})


def apiserver_requests(env: BenchEnvironment) -> float:
    """`apiserver_request_total` summed over every label, from the API server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(f"{env.plane.server_url}/metrics")  # noqa: S310
    with urllib.request.urlopen(request, context=env.plane.ssl_context(), timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "apiserver_request":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _bump_many(fleet: Fleet, names: list[str]) -> tuple[dict[str, int], dict[str, float]]:
    """Change every named control plane at once; (target generations, send times)."""
    targets: dict[str, int] = {}
    sent: dict[str, float] = {}

    def bump(name: str) -> None:
        sent[name] = time.monotonic()
        targets[name] = fleet.bump(name)

    with ThreadPoolExecutor(_BUMP_WORKERS, thread_name_prefix="bench-bump") as pool:
        for future in [pool.submit(bump, n) for n in names]:
            future.result()
    return targets, sent


RECONCILES = "controller_runtime_reconcile_total"

_METRICS = {
    "keys_generated": "kcp_tracker_keys_generated_total",
    "certificates_issued": "kcp_tracker_certificates_issued_total",
    "reconciles": RECONCILES,
    "reconcile_errors": "controller_runtime_reconcile_errors_total",
    "etcd_channels_opened": "kcp_bench_etcd_channels_opened",
    "etcd_channels_evicted": "kcp_bench_etcd_channels_evicted",
    "etcd_channel_pool_size": "kcp_bench_etcd_channels_max_size",
    "tunnels_opened": "kcp_tracker_tunnels_opened_total",
    "tunnels_open": "kcp_tracker_tunnels_open",
    "tunnels_max": "kcp_tracker_tunnels_max",
    "etcd_connections_max": "kcp_tracker_etcd_connections_max",
}
"""Figures read from the controller's /metrics at the end of a point (absent ones left out)."""


def _controller_figures(metrics: dict[str, float]) -> dict[str, int]:
    return {name: int(metrics[sample]) for name, sample in _METRICS.items() if sample in metrics}


def _measure_point(
    env: BenchEnvironment,
    fleet: Fleet,
    observer: GenerationObserver,
    *,
    size: int,
    controller: str,
    settings: ScaleSettings,
    progress: Progress,
) -> dict[str, Any]:
    fleet.grow(size, progress)
    names = fleet.names()
    current = observer.generations(names)
    reconciled_before = [n for n in names if observer.observed(n)]
    targets = {n: max(1, g) for n, g in current.items()}
    if reconciled_before:  # from the previous point: change them so this controller must act
        bumped, _ = _bump_many(fleet, reconciled_before)
        targets.update(bumped)
    # A bound for a stuck run, not a figure: on 2 shared cores under a load of 20-30 a
    # thousand clusters took more than 620 s to start (a key each, on the probe workers).
    timeout = 300.0 + 1.5 * size
    process = start_controller(
        controller,
        env,
        fleet.namespace,
        settings.flags,
        capacity=max(size, 1000),
        log_path=env.work_dir / "scale" / f"controller-{size}.log",
    )
    started = time.monotonic()
    try:
        sampler = Sampler(process.pid).start()
        progress.step(f"scale {size}: controller start until every cluster is reconciled", size)
        seen = observer.wait_observed(targets, timeout, progress.set, healthy=True)
        startup = max(seen.values()) - started
        startup_cpu = sampler.now().cpu_seconds

        time.sleep(2.0)  # the reconciles our own status writes trigger
        progress.step(f"scale {size}: steady state for {settings.steady_seconds:.0f}s")
        steady_from = time.monotonic()
        reconciles_before = process.metrics().get(RECONCILES, 0.0)
        before, requests_before = sampler.now(), apiserver_requests(env)
        time.sleep(settings.steady_seconds)
        after, requests_after = sampler.now(), apiserver_requests(env)
        steady_wall = time.monotonic() - steady_from
        steady_reconciles = process.metrics().get(RECONCILES, 0.0) - reconciles_before
        steady_cpu = after.cpu_seconds - before.cpu_seconds
        steady_threads = sampler.median_threads(since=steady_from)
        names_by_thread = thread_names(process.pid)
        own_threads, grpc_threads = split_threads(names_by_thread)
        # Through port-forwards, the controller holds no connection to etcd's client port.
        etcd_connections = len(tcp_connections(process.pid, remote_port=ETCD_CLIENT_PORT))

        progress.step(f"scale {size}: every control plane changed at once", size)
        burst_cpu, burst_started = sampler.now().cpu_seconds, time.monotonic()
        burst_targets, burst_sent = _bump_many(fleet, names)
        burst_seen = observer.wait_observed(burst_targets, timeout, progress.set)
        burst_end = max(burst_seen.values())
        burst_cpu = sampler.now().cpu_seconds - burst_cpu
        resync = burst_end - burst_started

        changes = random.sample(names, min(settings.changes, len(names)))
        progress.step(
            f"scale {size}: {len(changes)} single changes at {settings.change_rate:g}/s",
            len(changes),
        )
        single_targets: dict[str, int] = {}
        single_sent: dict[str, float] = {}
        for name in changes:
            single_sent[name] = time.monotonic()
            single_targets[name] = fleet.bump(name)
            progress.advance()
            time.sleep(
                max(0.0, 1.0 / settings.change_rate - (time.monotonic() - single_sent[name]))
            )
        single_seen = observer.wait_observed(single_targets, timeout)
        final = sampler.now()
        sampler.stop()
        threads_max = sampler.max_threads()
        metrics = process.metrics()
    finally:
        process.stop()
    return {
        "clusters": size,
        "startup_seconds": round(startup, 2),
        "startup_cpu_cores": round(startup_cpu / max(startup, 1e-9), 3),
        "resync_seconds": round(resync, 2),
        "resync_cpu_cores": round(burst_cpu / max(burst_end - burst_started, 1e-9), 3),
        "steady_cpu_cores": round(steady_cpu / steady_wall, 3),
        "steady_reconciles_per_second": round(steady_reconciles / steady_wall, 2),
        "steady_cpu_ms_per_reconcile": (
            round(1000 * steady_cpu / steady_reconciles, 2) if steady_reconciles >= 1 else None
        ),
        "steady_apiserver_requests_per_second": round(
            (requests_after - requests_before) / steady_wall, 1
        ),
        "peak_rss_mib": round(final.peak_rss / MIB, 1),
        "rss_mib": round(final.rss / MIB, 1),
        "threads": steady_threads,
        "threads_max": threads_max,
        "thread_names": names_by_thread,
        "own_threads": own_threads,
        "grpc_core_threads": grpc_threads,
        "etcd_client_connections": etcd_connections,
        "change_latency_ms": latency_ms(single_seen, single_sent),
        "resync_latency_ms": latency_ms(burst_seen, burst_sent),
        "controller_metrics": _controller_figures(metrics),
    }


def measure(env: BenchEnvironment, settings: ScaleSettings, progress: Progress) -> dict[str, Any]:
    controller = resolve_controller(settings.controller)
    namespace = env.unique("bench-scale")
    points: list[dict[str, Any]] = []
    with watched_fleet(env, namespace, controller) as (fleet, observer):
        for size in settings.sizes:
            points.append(
                _measure_point(
                    env,
                    fleet,
                    observer,
                    size=size,
                    controller=controller,
                    settings=settings,
                    progress=progress,
                )
            )
    small, large = points[0], points[-1]
    growth = {
        key: round(table.ratio(large[key], small[key]), 2)
        for key in (
            "startup_seconds",
            "resync_seconds",
            "steady_cpu_cores",
            "peak_rss_mib",
            "threads",
            "threads_max",
        )
    }
    result: dict[str, Any] = {
        "controller": controller,
        "etcd_access": settings.flags.etcd_access if controller == "kcp-run" else "direct",
        "controller_flags": asdict(settings.flags),
        "clusters": settings.clusters,
        "etcd_members": 1,
        "points": points,
        "growth_ratio_n_over_n10": growth,
        "threads_grow_with_clusters": large["threads"] > small["threads"],
        "own_threads_grow_with_clusters": large["own_threads"] > small["own_threads"],
    }
    result["acceptance"] = {
        "clusters": large["clusters"],
        "resync_under_60s": large["resync_seconds"] < RESYNC_LIMIT_SECONDS,
        "resync_under_one_core": large["resync_cpu_cores"] < CPU_LIMIT_CORES,
        "peak_rss_under_300mib": large["peak_rss_mib"] < RSS_LIMIT_MIB,
        "threads_independent_of_clusters": not result["threads_grow_with_clusters"],
        "own_threads_independent_of_clusters": not result["own_threads_grow_with_clusters"],
    }
    return result


def summary(result: dict[str, Any]) -> str:
    headers = [
        "clusters",
        "startup s",
        "resync s",
        "resync cores",
        "steady cores",
        "steady rec/s",
        "CPU ms/rec",
        "peak RSS MiB",
        "threads (own+gRPC)",
        "change p50 ms",
        "change p99 ms",
    ]
    rows = [
        [
            str(p["clusters"]),
            p["startup_seconds"],
            p["resync_seconds"],
            f"{p['resync_cpu_cores']:.2f}",
            f"{p['steady_cpu_cores']:.3f}",
            p["steady_reconciles_per_second"],
            p["steady_cpu_ms_per_reconcile"],
            p["peak_rss_mib"],
            f"{p['threads']} ({p.get('own_threads', '?')}+{p.get('grpc_core_threads', '?')})",
            p["change_latency_ms"]["p50"],
            p["change_latency_ms"]["p99"],
        ]
        for p in result["points"]
    ]
    flags = result["controller_flags"]
    lines = [
        table.render(
            f"scale: controller {result['controller']} (concurrency {flags['concurrency']}, "
            f"QPS {flags['kube_api_qps']:g}/{flags['kube_api_burst']}), etcd reached "
            f"{_route(result)}",
            headers,
            rows,
        ),
        *describe_fleet(result["controller"]),
    ]
    growth = result["growth_ratio_n_over_n10"]
    lines.append(
        "  10x clusters: " + ", ".join(f"{k.replace('_', ' ')} x{v:.2f}" for k, v in growth.items())
    )
    acceptance = result["acceptance"]
    lines.append(
        f"  acceptance at {acceptance['clusters']} clusters: "
        + "; ".join(
            f"{k.replace('_', ' ')}: {table.fmt(v)}"
            for k, v in acceptance.items()
            if k != "clusters"
        )
    )
    return "\n".join(lines)


def _route(result: dict[str, Any]) -> str:
    if result.get("etcd_access", "direct") == "direct":
        return "directly"
    opened = [p["controller_metrics"].get("tunnels_opened", "?") for p in result["points"]]
    held = [p.get("etcd_client_connections", "?") for p in result["points"]]
    return (
        f"through port-forwards (tunnels opened per point: {opened}; connections to etcd "
        f"held by the controller: {held})"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--clusters", type=int, default=None, help="N (1000; --quick 100)")
    parser.add_argument(
        "--controller",
        choices=CONTROLLERS,
        default="auto",
        help="auto: kcp run once it can reconcile the fleet, else runtime+tracker",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="controller workers (10)")
    parser.add_argument(
        "--etcd-access",
        choices=("port-forward", "direct"),
        default=None,
        help="kcp run's --etcd-access (port-forward, as Cluster API)",
    )


def settings_from_args(args: argparse.Namespace) -> ScaleSettings:
    settings = ScaleSettings.quick() if args.quick else ScaleSettings()
    changes = FleetRunSettings.changes_from_args(args)
    flags = settings.flags
    if getattr(args, "concurrency", None):
        flags = replace(flags, concurrency=args.concurrency)
    if getattr(args, "etcd_access", None):
        flags = replace(flags, etcd_access=args.etcd_access)
    changes["flags"] = flags
    return replace(settings, **changes)


def scenario(settings: ScaleSettings) -> Scenario:
    return cluster_scenario("scale", measure, settings, summary)


def run(args: argparse.Namespace) -> int:
    return run_scenarios(args, [scenario(settings_from_args(args))])
