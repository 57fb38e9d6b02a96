"""Running scenarios: one management cluster, a progress bar, the tables, the JSON, the plot.

A scenario is a `measure(env, progress) -> dict` and a `summary(dict) -> str`;
`run_scenarios` runs the chosen ones in order against one local management
cluster (started only if one of them needs it), prints every summary, writes
the combined JSON (`{scenario name: result}` plus `environment`) and the plot.
A failing scenario is recorded as `{"error": ...}`; the others still run. The
logs of the processes measured are kept in `<json stem>.logs/` next to the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kcp.bench.environment import BenchEnvironment, machine_info, management_cluster
from kcp.bench.progress import Progress

__all__ = ["Scenario", "add_common_arguments", "cluster_scenario", "run_scenarios"]

Measure = Callable[[BenchEnvironment | None, Progress], dict[str, Any]]


@dataclass(frozen=True)
class Scenario:
    name: str
    measure: Measure
    summary: Callable[[dict[str, Any]], str]
    needs_cluster: bool = True


Settings = TypeVar("Settings")


def cluster_scenario(
    name: str,
    measure: Callable[[BenchEnvironment, Settings, Progress], dict[str, Any]],
    settings: Settings,
    summary: Callable[[dict[str, Any]], str],
) -> Scenario:
    """Scenario `name`: `measure(env, settings, progress)` against the management cluster."""

    def run_measure(env: BenchEnvironment | None, progress: Progress) -> dict[str, Any]:
        assert env is not None
        return measure(env, settings, progress)

    return Scenario(name, run_measure, summary)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke size: smaller counts, same checks"
    )


@contextlib.contextmanager
def _maybe_cluster(
    needed: bool, progress: Progress, keep_logs: Path | None
) -> Iterator[BenchEnvironment | None]:
    if not needed:
        yield None
        return
    with management_cluster(progress, keep_logs=keep_logs) as env:
        yield env


def _write_json(args: argparse.Namespace, results: dict[str, Any]) -> bool:
    if args.json is None:
        return False
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return True


def run_scenarios(args: argparse.Namespace, scenarios: Sequence[Scenario]) -> int:
    """Run `scenarios`, print their tables, write `args.json` and `args.plot`; 1 if any failed."""
    from kcp.bench.environment import quiet_logging

    quiet_logging()
    progress = Progress()
    results: dict[str, Any] = {
        "environment": {
            **machine_info(),
            "quick": bool(args.quick),
            "command": "kcp bench " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else []),
        }
    }
    failed = False
    started = time.monotonic()
    try:
        # Logs of the measured controllers go next to the JSON, to explain a figure later.
        logs = args.json.with_name(f"{args.json.stem}.logs") if args.json is not None else None
        needed = any(s.needs_cluster for s in scenarios)
        with _maybe_cluster(needed, progress, logs) as env:
            for scenario in scenarios:
                scenario_started = time.monotonic()
                try:
                    results[scenario.name] = scenario.measure(env, progress)
                except Exception as error:
                    failed = True
                    progress.note(f"{scenario.name} failed: {error}")
                    results[scenario.name] = {
                        "error": f"{type(error).__name__}: {error}",
                        "traceback": traceback.format_exc(limit=8),
                    }
                results[scenario.name]["seconds"] = round(time.monotonic() - scenario_started, 1)
                # What is measured so far survives a run stopped in a later scenario.
                _write_json(args, results)
    finally:
        progress.close()
    results["environment"]["seconds"] = round(time.monotonic() - started, 1)
    results["environment"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    for scenario in scenarios:
        result = results[scenario.name]
        print()
        if "error" in result:
            print(f"{scenario.name}: FAILED: {result['error']}")
        else:
            print(scenario.summary(result))
    print(f"\ntotal {results['environment']['seconds']:.0f} s")
    if _write_json(args, results):
        print(f"JSON: {args.json}")
    if getattr(args, "plot", None) is not None:
        from kcp.bench.plot import plot

        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 1 if failed else 0
