"""`kcp bench versus`: kcp against Cluster API's own KubeadmControlPlane controller.

Both reconcile the same kind, so each gets its own fresh, identical fleet: a
namespace with its own simulator (real etcd members and kube-apiservers per
Machine, Cluster API's core and CABPK beside it) on one local management
cluster whose API server writes an audit log. 10 clusters: one with 3
control-plane replicas (the rollout), the rest with 1 (one of them is scaled
up to 3). Scenarios, in order: create and settle; steady state over a fixed
window; a label added to every machine template (both controllers propagate
it to the Machines in place); a version rollout of the 3-replica cluster; a
scale-up 1 -> 3 at the same time (each timed on its own). etcd quorum is sampled
every 3 s throughout.

By default the contenders run side by side, phase by phase (a barrier between
phases), so both see the same machine load; `--one-at-a-time` runs them one
after the other. CPU, RSS and threads are per process, from `/proc`.

`--profile DIR` records a CPU profile of each controller over settle and over the
rollout (`kcp.bench.versus_profile`) and prints where its CPU went.

Then, unless `--quick`, 100 and 1000 clusters on the cheap shared fleet, one
contender at a time (`kcp.bench.versus_shared`); `--shared-only` runs just those.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kcp.bench import procstat
from kcp.bench.environment import BenchEnvironment, info_log, management_cluster
from kcp.bench.progress import Progress
from kcp.bench.runner import Scenario, add_common_arguments, run_scenarios
from kcp.bench.versus_counts import AUDIT_POLICY, AuditCounter
from kcp.bench.versus_fleet import CONTENDERS, ClusterShape, Contender, QuorumWatch, RealFleet
from kcp.bench.versus_phases import (
    Window,
    change_every_cluster,
    rollout_and_scale_up,
    settle,
    steady,
)
from kcp.bench.versus_profile import PROFILED_PHASES, PhaseProfile
from kcp.bench.versus_profile import render as render_profiles
from kcp.bench.versus_report import pairs_of, render
from kcp.sim.apiserver import AUDIT_LOG_UNROTATED

__all__ = [
    "PHASES",
    "VersusSettings",
    "add_arguments",
    "measure",
    "run",
    "scenario",
    "summary",
]

PHASES = ("settle", "steady", "change", "rollout_scale_up")
ROLLOUT_CLUSTER, SCALE_CLUSTER = "v00", "v01"


@dataclass(frozen=True)
class VersusSettings:
    clusters: int = 10
    contenders: tuple[str, ...] = ("kcp", "capi", "capi-tuned")
    steady_seconds: float = 60.0
    settle_timeout: float = 600.0
    change_timeout: float = 120.0
    rollout_timeout: float = 420.0
    together: bool = True
    """Contenders side by side, phase by phase; False: one after the other."""
    pairs: bool = True
    """Side by side, kcp beside one Cluster API contender at a time (kcp runs once per pair,
    on a fresh fleet; ratios come from the pair): three fleets of real machines at once
    overload 2 cores until scenarios time out. False: every contender at once."""
    keep_logs: Path | None = None
    shared_sizes: tuple[int, ...] = (100, 1000)
    """Sizes run on the cheap shared fleet after the 10 clusters (`kcp.bench.versus_shared`)."""
    profile_dir: Path | None = None
    """Where CPU profiles of `PROFILED_PHASES` go, one file per contender and phase; None:
    no profiler endpoint at all (the figures as without profiling)."""

    @classmethod
    def quick(cls) -> VersusSettings:
        return cls(
            shared_sizes=(),
            contenders=("kcp", "capi"),
            steady_seconds=10.0,
            settle_timeout=240.0,
            change_timeout=60.0,
            rollout_timeout=240.0,
        )

    def shapes(self) -> list[ClusterShape]:
        return [
            ClusterShape(f"v{i:02d}", 3 if f"v{i:02d}" == ROLLOUT_CLUSTER else 1)
            for i in range(self.clusters)
        ]


@contextlib.contextmanager
def audited_cluster(
    progress: Progress, users: list[str], keep_logs: Path | None
) -> Iterator[tuple[BenchEnvironment, AuditCounter]]:
    """A management cluster whose API server logs the requests of `users` (only)."""
    import json

    with tempfile.TemporaryDirectory(prefix="kcp-versus-audit-") as directory:
        policy = Path(directory) / "policy.yaml"
        policy.write_text(AUDIT_POLICY.format(users=json.dumps(users)))
        log = Path(directory) / "audit.log"
        args = [f"--audit-policy-file={policy}", f"--audit-log-path={log}", AUDIT_LOG_UNROTATED]
        try:
            with management_cluster(progress, keep_logs=keep_logs, apiserver_args=args) as env:
                yield env, AuditCounter(log)
        finally:
            if keep_logs is not None and log.exists():
                # Kept to explain a count later (which object, which answer, in what order).
                keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, keep_logs / "audit.log")


def _phase_plan(
    settings: VersusSettings, observer: Any
) -> list[tuple[str, Callable[[Window], dict[str, Any]]]]:
    return [
        ("settle", lambda w: settle(w, settings.shapes(), settings.settle_timeout)),
        ("steady", lambda w: steady(w, settings.steady_seconds)),
        ("change", lambda w: change_every_cluster(w, observer, settings.change_timeout)),
        (
            "rollout_scale_up",
            lambda w: rollout_and_scale_up(
                w,
                rollout_cluster=ROLLOUT_CLUSTER,
                scale_cluster=SCALE_CLUSTER,
                replicas=3,
                timeout=settings.rollout_timeout,
            ),
        ),
    ]


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_contender(
    env: BenchEnvironment,
    audit: AuditCounter,
    contender: Contender,
    settings: VersusSettings,
    *,
    sync: Callable[[str], None],
    progress: Progress,
) -> dict[str, Any]:
    """Every phase against a fresh fleet for `contender`; a failed phase records its error."""
    from kcp.bench.observer import GenerationObserver

    result: dict[str, Any] = {
        "contender": contender.name,
        "description": contender.description,
        "flags": list(contender.args),
        "phases": {},
    }
    # Machines boot at once and each runs its own kubelet, as on a cloud: a worker for every
    # Machine the fleet can have at once (a booting machine holds one for its whole boot,
    # and the running machines' kubelet syncs take turns on the same workers).
    fleet = RealFleet(
        env,
        contender,
        machine_concurrency=2 * settings.clusters,
        profiler=settings.profile_dir is not None,
    )
    profiles: dict[str, PhaseProfile] = {}
    result["namespace"] = fleet.namespace
    starting = time.monotonic()
    try:
        fleet.start()
        result["start_seconds"] = round(time.monotonic() - starting, 1)
    except Exception as error:
        fleet.stop()
        result["error"] = _error(error)
        for phase in PHASES:
            sync(phase)
            result["phases"][phase] = {"error": f"the controller did not start: {_error(error)}"}
        return result
    quorum = QuorumWatch(fleet).start()
    observer = GenerationObserver(env.api_client(), fleet.namespace)
    try:
        observer.start()
        for phase, run_phase in _phase_plan(settings, observer):
            sync(phase)
            progress.note(f"versus {contender.name}: {phase}")
            profile = None
            url = fleet.controller.profiler_url if fleet.controller is not None else None
            if settings.profile_dir is not None and url is not None and phase in PROFILED_PHASES:
                profile = PhaseProfile(
                    url, contender.program, settings.profile_dir, f"{contender.name}.{phase}"
                ).start()
                profiles[phase] = profile
            try:
                result["phases"][phase] = run_phase(Window.open(fleet, quorum, audit))
            except Exception as error:
                progress.note(f"versus {contender.name}: {phase} failed: {error}")
                result["phases"][phase] = {
                    "error": _error(error),
                    "traceback": traceback.format_exc(limit=4),
                }
            finally:
                if profile is not None:
                    profile.stop()
            if settings.keep_logs is not None:
                fleet.snapshot(phase)
        result["peak_rss_mib"] = round(procstat.sample(fleet.pid).peak_rss / procstat.MIB, 1)
        result["quorum_samples"], result["quorum_lost_samples"] = quorum.snapshot()
        result["quorum_lost"] = list(quorum.lost)
    finally:
        observer.stop()
        quorum.stop()
        fleet.stop()
    if profiles:
        result["profiles"] = {phase: p.result() for phase, p in profiles.items()}
    return result


def measure(settings: VersusSettings, progress: Progress) -> dict[str, Any]:
    """The 10-cluster part (unless `clusters` is 0), then the shared-fleet sizes."""
    result = _measure_real(settings, progress) if settings.clusters > 0 else {}
    if settings.shared_sizes:
        from kcp.bench import versus_shared

        result["shared"] = versus_shared.measure(
            versus_shared.SharedSettings(
                sizes=settings.shared_sizes,
                contenders=settings.contenders,
                steady_seconds=settings.steady_seconds,
                keep_logs=settings.keep_logs.with_name("shared")
                if settings.keep_logs is not None
                else None,
            ),
            progress,
        )
    return result


def _measure_real(settings: VersusSettings, progress: Progress) -> dict[str, Any]:
    contenders = [CONTENDERS[name] for name in settings.contenders]
    users = [c.user for c in contenders]
    started = time.monotonic()
    sim_log = (
        info_log("kcp.sim", settings.keep_logs / "sim.log")
        if settings.keep_logs is not None
        else contextlib.nullcontext()
    )
    with sim_log, audited_cluster(progress, users, settings.keep_logs) as (env, audit):
        progress.step(
            f"versus: {len(contenders)} controllers, {settings.clusters} clusters each, "
            + ("side by side" if settings.together else "one at a time")
        )
        if _paired(settings, contenders):
            pairs = _in_pairs(env, audit, contenders, settings, progress)
            results = [r for pair in pairs for r in pair["contenders"]]
        elif settings.together:
            results = _side_by_side(env, audit, contenders, settings, progress)
        else:
            results = [
                run_contender(env, audit, c, settings, sync=lambda _phase: None, progress=progress)
                for c in contenders
            ]
    paired = _paired(settings, contenders)
    return {
        "clusters": settings.clusters,
        "shapes": {s.name: s.replicas for s in settings.shapes()},
        "together": settings.together,
        "steady_seconds": settings.steady_seconds,
        **({"pairs": pairs} if paired else {"contenders": results}),
        "wall_seconds": round(time.monotonic() - started, 1),
        "fleet": (
            "per controller: its own namespace, simulator and Cluster API core + CABPK; every "
            "Machine a real etcd member and kube-apiserver on loopback; one management API "
            "server (audit log by user) shared by all"
        ),
    }


def _paired(settings: VersusSettings, contenders: list[Contender]) -> bool:
    names = [c.name for c in contenders]
    return settings.together and settings.pairs and "kcp" in names and len(names) > 2


def _in_pairs(
    env: BenchEnvironment,
    audit: AuditCounter,
    contenders: list[Contender],
    settings: VersusSettings,
    progress: Progress,
) -> list[dict[str, Any]]:
    """kcp beside each other contender in turn, each pair side by side on fresh fleets."""
    mine = next(c for c in contenders if c.name == "kcp")
    pairs: list[dict[str, Any]] = []
    for other in (c for c in contenders if c is not mine):
        progress.note(f"versus: pair kcp + {other.name}")
        started = time.monotonic()
        # kcp runs once per pair: each pair's profiles in a folder of their own.
        paired = (
            replace(settings, profile_dir=settings.profile_dir / f"kcp+{other.name}")
            if settings.profile_dir is not None
            else settings
        )
        results = _side_by_side(env, audit, [mine, other], paired, progress)
        pairs.append(
            {
                "contenders": results,
                "wall_seconds": round(time.monotonic() - started, 1),
            }
        )
    return pairs


def _side_by_side(
    env: BenchEnvironment,
    audit: AuditCounter,
    contenders: list[Contender],
    settings: VersusSettings,
    progress: Progress,
) -> list[dict[str, Any]]:
    barrier = threading.Barrier(len(contenders))
    phase_limit = settings.settle_timeout + settings.rollout_timeout + 120.0

    def sync(_phase: str) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=phase_limit)

    results: list[dict[str, Any] | None] = [None] * len(contenders)

    def work(index: int, contender: Contender) -> None:
        try:
            results[index] = run_contender(
                env, audit, contender, settings, sync=sync, progress=progress
            )
        except Exception as error:
            barrier.abort()
            results[index] = {"contender": contender.name, "error": _error(error), "phases": {}}

    threads = [
        threading.Thread(target=work, args=(i, c), name=f"versus-{c.name}", daemon=True)
        for i, c in enumerate(contenders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def summary(result: dict[str, Any]) -> str:
    lines = [_summary_real(result)] if "contenders" in result or "pairs" in result else []
    if "shared" in result:
        from kcp.bench import versus_shared

        lines.append(versus_shared.summary(result["shared"]))
    return "\n".join(lines)


def _summary_real(result: dict[str, Any]) -> str:
    how = "side by side" if result["together"] else "one at a time"
    tables: list[str] = []
    for pair in pairs_of(result):
        names = " + ".join(r["contender"] for r in pair["contenders"])
        title = (
            f"versus: kcp vs Cluster API's KCP, {result['clusters']} clusters each on real "
            f"simulated machines ({how}"
            + (f", the pair {names}" if "pairs" in result else "")
            + f"; steady window {result['steady_seconds']:.0f} s; "
            f"{pair['wall_seconds']:.0f} s)"
        )
        tables.append(render(pair["contenders"], title) + render_profiles(pair["contenders"]))
    return "\n\n".join([*tables[:-1], "\n".join([tables[-1], f"  fleet: {result['fleet']}"])])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=tuple(CONTENDERS),
        default=None,
        help="controllers to compare (kcp capi capi-tuned; --quick: kcp capi)",
    )
    parser.add_argument(
        "--all-at-once",
        action="store_true",
        help="with three contenders, run all three side by side instead of kcp beside each "
        "Cluster API contender in turn",
    )
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="run the contenders one after the other instead of side by side",
    )
    parser.add_argument("--steady-seconds", type=float, default=None, help="steady window")
    parser.add_argument(
        "--clusters", type=int, default=None, help="clusters per fleet (10; at least 2)"
    )
    parser.add_argument(
        "--shared-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes on the cheap shared fleet after the 10 clusters (100 1000; --quick: none)",
    )
    parser.add_argument(
        "--shared-only", action="store_true", help="only the shared-fleet sizes (no 10 clusters)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record each controller's CPU profile over settle and rollout into DIR and print "
        "its top functions (off: no profiler endpoints)",
    )


def settings_from_args(args: argparse.Namespace) -> VersusSettings:
    settings = VersusSettings.quick() if args.quick else VersusSettings()
    changes: dict[str, Any] = {}
    if getattr(args, "contenders", None):
        changes["contenders"] = tuple(args.contenders)
    if getattr(args, "one_at_a_time", False):
        changes["together"] = False
    if getattr(args, "all_at_once", False):
        changes["pairs"] = False
    if getattr(args, "clusters", None):
        changes["clusters"] = max(2, args.clusters)
    if getattr(args, "shared_sizes", None) is not None:
        changes["shared_sizes"] = tuple(args.shared_sizes)
    if getattr(args, "shared_only", False):
        changes["clusters"] = 0
    if getattr(args, "profile", None) is not None:
        changes["profile_dir"] = args.profile
    if getattr(args, "steady_seconds", None):
        changes["steady_seconds"] = args.steady_seconds
    if getattr(args, "json", None) is not None:
        changes["keep_logs"] = args.json.with_name(f"{args.json.stem}.logs") / "versus"
    return replace(settings, **changes)


def scenario(settings: VersusSettings) -> Scenario:
    """Its own management cluster (with an audit log): it needs none from the runner."""
    return Scenario(
        "versus", lambda _env, progress: measure(settings, progress), summary, needs_cluster=False
    )


def run(args: argparse.Namespace) -> int:
    return run_scenarios(args, [scenario(settings_from_args(args))])
