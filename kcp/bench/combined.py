"""`kcp bench all`: every scenario in one run, one JSON, one plot.

In order: `tracker` (reconcile CPU, cached vs naive, for N = 10, 100 and 1000
clusters; `--quick`: 10 and 100; at N = 100 also through port-forwards via the
management API server, kept tunnels vs Cluster API's new tunnel per reconcile),
`memory`, `scale` and `profile`, all against one local management cluster, then
`versus` (kcp against Cluster API's KCP on real simulated machines, on a management
cluster of its own with an audit log; left out of `--quick`, which it would more than
double, unless named in `--only`). The
JSON has one object per scenario under its name; `tracker` is the N = 100 run
(the acceptance point) with every N under `tracker.sweep`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from kcp.bench import memory, profile, scale, table, versus
from kcp.bench.controller import CONTROLLERS
from kcp.bench.environment import BenchEnvironment
from kcp.bench.progress import Progress
from kcp.bench.runner import Scenario, add_common_arguments, run_scenarios
from kcp.bench.tracker import describe_clusters

__all__ = ["TRACKER_SWEEP", "TRACKER_SWEEP_QUICK", "add_arguments", "run", "tracker_scenario"]

TRACKER_SWEEP: tuple[tuple[int, int], ...] = ((10, 20), (100, 5), (1000, 1))
"""(clusters, reconciles per cluster and mode): the naive mode makes a key per
reconcile, so fewer reconciles at large N keep its run to about a minute."""
TRACKER_SWEEP_QUICK: tuple[tuple[int, int], ...] = ((10, 5), (100, 2))
ACCEPTANCE_CLUSTERS = 100
CPU_RATIO_FLOOR = 20.0
"""Acceptance: CPU per reconcile at least this many times lower cached than naive at N = 100."""


def tracker_scenario(sweep: tuple[tuple[int, int], ...]) -> Scenario:
    def measure(env: BenchEnvironment | None, progress: Progress) -> dict[str, Any]:
        from kcp.bench.tracker import run_benchmark

        runs: list[dict[str, Any]] = []
        progress.step("tracker: cached vs naive etcd client keys", len(sweep))
        for clusters, reconciles in sweep:
            # Through port-forwards too at the acceptance point (it needs the API server).
            both = clusters == ACCEPTANCE_CLUSTERS and env is not None
            result = run_benchmark(
                clusters, reconciles, etcd_access="both" if both else "direct", env=env
            )
            runs.append(result.as_dict()["tracker"])
            progress.advance()
        main = next((r for r in runs if r["clusters"] == ACCEPTANCE_CLUSTERS), runs[-1])
        acceptance: dict[str, Any] = {
            "clusters": main["clusters"],
            "one_key_per_cluster_cached": main["cached"]["keys_generated"] == main["clusters"],
            "cpu_ratio_at_least_20": main["cpu_ratio"] >= CPU_RATIO_FLOOR,
        }
        if "kept" in main:
            acceptance["kept_tunnels_reused"] = main["kept"]["tunnels_opened"] == 0
        return {**main, "sweep": runs, "acceptance": acceptance}

    return Scenario("tracker", measure, tracker_summary)


def tracker_summary(result: dict[str, Any]) -> str:
    rows = []
    for run in result["sweep"]:
        cached, naive = run["cached"], run["naive"]
        rows.append(
            [
                str(run["clusters"]),
                str(run["reconciles"]),
                str(cached["keys_generated"]),
                str(naive["keys_generated"]),
                f"{cached['cpu_ms_per_reconcile']:.3f}",
                f"{naive['cpu_ms_per_reconcile']:.3f}",
                f"{run['cpu_ratio']:.1f}",
                f"{run['cpu_ratio_including_warmup']:.1f}",
                f"{1000 / max(cached['wall_ms_per_reconcile'], 1e-9):.0f}",
                f"{1000 / max(naive['wall_ms_per_reconcile'], 1e-9):.0f}",
            ]
        )
    acceptance = result["acceptance"]
    tunnels = []
    if "kept" in result:
        kept, capi = result["kept"], result["capi"]
        tunnels = [
            f"  through port-forwards at {result['clusters']} clusters: CPU ms/reconcile kept "
            f"tunnels {kept['cpu_ms_per_reconcile']:.3f} ({kept['tunnels_opened']} opened), "
            f"a new one per reconcile (Cluster API) {capi['cpu_ms_per_reconcile']:.3f} "
            f"({capi['tunnels_opened']} opened), direct "
            f"{result['cached']['cpu_ms_per_reconcile']:.3f}; capi/kept "
            f"{result['capi_over_kept']:.1f}, kept/direct {result['kept_over_direct']:.2f}; "
            f"kept tunnels reused: {table.fmt(acceptance['kept_tunnels_reused'])}"
        ]
    return "\n".join(
        [
            table.render(
                f"tracker: etcd health check per reconcile, {result['key_algorithm']} client keys",
                [
                    "clusters",
                    "reconciles",
                    "keys cached",
                    "keys naive",
                    "CPU ms cached",
                    "CPU ms naive",
                    "ratio steady",
                    "incl. warm-up",
                    "rec/s cached",
                    "rec/s naive",
                ],
                rows,
            ),
            describe_clusters(tunnelled="kept" in result),
            "  ratio steady: naive over cached CPU per reconcile once every cluster has its key; "
            "incl. warm-up: the cached mode's key generation (one key per cluster) spread over "
            "the reconciles measured",
            f"  acceptance at {acceptance['clusters']} clusters: one key per cluster (cached): "
            f"{table.fmt(acceptance['one_key_per_cluster_cached'])}; steady CPU ratio >= "
            f"{CPU_RATIO_FLOOR:.0f}: {table.fmt(acceptance['cpu_ratio_at_least_20'])}",
            *tunnels,
        ]
    )


ALL_SHARED_SIZES = (100,)
"""The shared-fleet sizes of versus in `kcp bench all` (`kcp bench versus`: 100 and 1000)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("tracker", "memory", "scale", "profile", "versus"),
        default=None,
        help="run only these scenarios (versus: not in --quick unless named here)",
    )
    parser.add_argument(
        "--controller",
        choices=CONTROLLERS,
        default="auto",
        help="controller for scale and profile (auto: kcp run once usable)",
    )


def run(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    scale_settings = replace(
        scale.ScaleSettings.quick() if quick else scale.ScaleSettings(), controller=args.controller
    )
    profile_settings = replace(profile.settings_from_args(args), controller=args.controller)
    scenarios = [
        tracker_scenario(TRACKER_SWEEP_QUICK if quick else TRACKER_SWEEP),
        memory.scenario(memory.MemorySettings.quick() if quick else memory.MemorySettings()),
        scale.scenario(scale_settings),
        profile.scenario(profile_settings),
    ]
    if not quick or (args.only and "versus" in args.only):
        versus_settings = versus.settings_from_args(args)
        if versus_settings.shared_sizes:
            # 1000 clusters per contender, one contender at a time, is most of an hour on
            # 2 cores: `kcp bench versus` runs it; the suite stays near 45 minutes.
            versus_settings = replace(versus_settings, shared_sizes=ALL_SHARED_SIZES)
        scenarios.append(versus.scenario(versus_settings))
    if args.only:
        scenarios = [s for s in scenarios if s.name in args.only]
    return run_scenarios(args, scenarios)
