"""`kcp bench profile`: where a controller's CPU goes at 100 clusters, by py-spy.

The controller (see `kcp.bench.controller`) is started against 100 clusters
sharing one etcd and profiled twice with py-spy (speedscope format):

- `warmup`: from its start until every cluster is reconciled and reported etcd
  healthy — the one key generation per cluster happens here (the same-run
  baseline);
- `steady`: afterwards, for a fixed time while control planes keep changing
  at a steady pace, so reconciles run throughout.

Reported for each: samples, the share of samples with private key generation
on the stack (`generate_private_key` of `cryptography` or `kcp.certs.keys`) —
expected none in steady state — and the top 10 functions by self samples. The
speedscope documents are saved next to the JSON (open them in speedscope.app).
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kcp.bench import table
from kcp.bench.controller import CONTROLLERS, resolve_controller, start_controller
from kcp.bench.environment import BenchEnvironment
from kcp.bench.fleet import Fleet
from kcp.bench.fleet_run import FleetRunSettings, watched_fleet
from kcp.bench.progress import Progress
from kcp.bench.runner import Scenario, add_common_arguments, cluster_scenario, run_scenarios
from kcp.bench.speedscope import summarize

__all__ = ["ProfileSettings", "add_arguments", "measure", "run", "scenario", "summary"]

_ATTACH_DELAY = 0.5
"""Seconds after the controller starts before py-spy attaches (the interpreter must be up)."""


@dataclass(frozen=True)
class ProfileSettings(FleetRunSettings):
    clusters: int = 100
    steady_seconds: int = 30
    change_rate: float = 20.0
    """Control-plane changes per second during the steady profile (each one reconcile)."""
    rate: int = 100
    """py-spy samples per second."""
    output_dir: Path | None = None
    """Where the speedscope files go (default: a new temporary directory, kept)."""
    output_prefix: str = "kcp-bench"

    @classmethod
    def quick(cls) -> ProfileSettings:
        return cls(steady_seconds=8)


def _py_spy() -> str:
    from kcp.runtime.profiler import MISSING_HELP, find_py_spy

    found = find_py_spy()
    if found is None:
        raise RuntimeError(MISSING_HELP)
    return found


def _record(pid: int, output: Path, rate: int, duration: int | None) -> subprocess.Popen[bytes]:
    # --nonblocking: sample without pausing the controller (less perturbation, same picture).
    command = [_py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking"]
    command += ["--format", "speedscope", "--output", str(output)]
    if duration is not None:
        command += ["--duration", str(duration)]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _finish(recorder: subprocess.Popen[bytes], output: Path, *, interrupt: bool) -> None:
    """Stop (SIGINT makes py-spy write what it has) or wait for a recorder; check its file."""
    if interrupt and recorder.poll() is None:
        recorder.send_signal(signal.SIGINT)
    try:
        _, stderr = recorder.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        recorder.kill()
        _, stderr = recorder.communicate()
    if not output.exists():
        from kcp.runtime.profiler import PTRACE_HELP

        message = stderr.decode(errors="replace").strip()[-400:]
        denied = any(w in message.lower() for w in ("permission", "ptrace", "not permitted"))
        raise RuntimeError(PTRACE_HELP if denied else f"py-spy wrote no profile: {message}")


def _output_dir(settings: ProfileSettings) -> Path:
    if settings.output_dir is not None:
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        return settings.output_dir
    return Path(tempfile.mkdtemp(prefix="kcp-bench-profile-"))


def measure(env: BenchEnvironment, settings: ProfileSettings, progress: Progress) -> dict[str, Any]:
    controller = resolve_controller(settings.controller)
    out_dir = _output_dir(settings)
    warm_path = out_dir / f"{settings.output_prefix}.profile-warmup.speedscope.json"
    steady_path = out_dir / f"{settings.output_prefix}.profile-steady.speedscope.json"
    namespace = env.unique("bench-profile")
    with watched_fleet(env, namespace, controller) as (fleet, observer):
        fleet.grow(settings.clusters, progress)
        names = fleet.names()
        process = start_controller(
            controller,
            env,
            namespace,
            settings.flags,
            capacity=max(settings.clusters, 1000),
            log_path=env.work_dir / "profile" / "controller.log",
        )
        try:
            started = time.monotonic()
            time.sleep(_ATTACH_DELAY)
            recorder = _record(process.pid, warm_path, settings.rate, None)
            progress.step(
                f"profile: warm-up of {settings.clusters} clusters under py-spy", len(names)
            )
            observer.wait_observed(
                {n: 1 for n in names}, 120.0 + settings.clusters, progress.set, healthy=True
            )
            warm_seconds = time.monotonic() - started
            _finish(recorder, warm_path, interrupt=True)

            time.sleep(2.0)
            progress.step(
                f"profile: steady state, {settings.steady_seconds}s under py-spy",
                settings.steady_seconds,
            )
            recorder = _record(process.pid, steady_path, settings.rate, settings.steady_seconds)
            targets = _drive_changes(fleet, names, settings, progress)
            _finish(recorder, steady_path, interrupt=False)
            observer.wait_observed(targets, 120.0)
        finally:
            process.stop()
    warm = summarize(warm_path)
    steady = summarize(steady_path)
    return {
        "controller": controller,
        "clusters": settings.clusters,
        "rate_hz": settings.rate,
        "warmup": {**warm.as_dict(), "seconds": round(warm_seconds, 1)},
        "steady": {
            **steady.as_dict(),
            "seconds": settings.steady_seconds,
            "changes_driven": len(targets),
        },
        "keygen_share_ratio_warmup_over_steady": round(
            table.ratio(warm.keygen_share, steady.keygen_share, floor=1 / max(steady.samples, 1)),
            1,
        ),
        "top_functions": steady.top_self,
        "speedscope": {"warmup": str(warm_path), "steady": str(steady_path)},
        "acceptance": {"no_key_generation_after_warmup": steady.keygen_samples == 0},
    }


def _drive_changes(
    fleet: Fleet, names: list[str], settings: ProfileSettings, progress: Progress
) -> dict[str, int]:
    """Change control planes at `change_rate` for the profile's duration; their targets."""
    targets: dict[str, int] = {}
    deadline = time.monotonic() + settings.steady_seconds
    order = names[:]
    random.shuffle(order)
    index = 0
    while time.monotonic() < deadline:
        name = order[index % len(order)]
        index += 1
        targets[name] = fleet.bump(name)
        progress.set(int(settings.steady_seconds - (deadline - time.monotonic())))
        time.sleep(1.0 / settings.change_rate)
    return targets


def summary(result: dict[str, Any]) -> str:
    rows = [
        [
            phase,
            str(result[phase]["samples"]),
            str(result[phase]["active_samples"]),
            str(result[phase]["keygen_samples"]),
            f"{100 * result[phase]['keygen_share']:.2f}",
            f"{result[phase]['seconds']}",
        ]
        for phase in ("warmup", "steady")
    ]
    lines = [
        table.render(
            f"profile: {result['controller']} at {result['clusters']} clusters, py-spy "
            f"{result['rate_hz']} Hz",
            ["phase", "samples", "active", "key generation", "share of active %", "seconds"],
            rows,
        ),
        f"  key generation share, warm-up / steady: "
        f"{result['keygen_share_ratio_warmup_over_steady']:.1f}x "
        f"(steady state without key generation: "
        f"{table.fmt(result['acceptance']['no_key_generation_after_warmup'])})",
        "  top functions by self samples (steady state):",
    ]
    for entry in result["top_functions"]:
        lines.append(
            f"    {100 * entry['self_share']:5.1f}%  {entry['function']}  "
            f"({entry['file']}:{entry['line']})"
        )
    lines.append(f"  speedscope: {result['speedscope']['steady']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--clusters", type=int, default=None, help="clusters (100)")
    parser.add_argument(
        "--duration", type=int, default=None, help="steady-state profile seconds (30; --quick 8)"
    )
    parser.add_argument("--controller", choices=CONTROLLERS, default="auto")


def settings_from_args(args: argparse.Namespace) -> ProfileSettings:
    settings = ProfileSettings.quick() if args.quick else ProfileSettings()
    changes = FleetRunSettings.changes_from_args(args)
    if getattr(args, "duration", None):
        changes["steady_seconds"] = args.duration
    if getattr(args, "json", None) is not None:
        changes["output_dir"] = args.json.parent
        changes["output_prefix"] = args.json.stem
    return replace(settings, **changes)


def scenario(settings: ProfileSettings) -> Scenario:
    return cluster_scenario("profile", measure, settings, summary)


def run(args: argparse.Namespace) -> int:
    return run_scenarios(args, [scenario(settings_from_args(args))])
