"""`kcp dev` (and `make run`): management cluster, simulated machines, the controller, samples.

The controller runs as a real `kcp run` child process — the same program a
management cluster runs — with its health, metrics and profiler endpoints on
loopback ports printed at start, and its log in the work directory. Ctrl-C stops
the controller, the simulated machines and the management cluster, in that order.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from kcp.sim.dev import SAMPLES_DIR, DevEnvironment, DevOptions, run_dev
from kcp.testing.processes import ManagedProcess, free_port, wait_until

HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", type=Path, help="use this management cluster (default: start a local one)"
    )
    parser.add_argument(
        "--samples-dir", type=Path, default=SAMPLES_DIR, help="manifests to apply at start"
    )
    parser.add_argument("--no-samples", action="store_true", help="apply no manifests")
    parser.add_argument("-n", "--namespace", default="default", help="namespace for the samples")
    parser.add_argument("--work-dir", type=Path, help="keep data and logs here (default: temp)")
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between redraws")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--controller-arg",
        action="append",
        default=[],
        help="extra flag for `kcp run` (repeatable), e.g. --controller-arg=--v=1",
    )


@dataclass
class ControllerProcess:
    """The `kcp run` child and where to reach it."""

    process: ManagedProcess
    health_url: str
    metrics_url: str
    profiler_url: str

    def stop(self) -> None:
        self.process.stop(timeout=35)  # kcp run drains in-flight reconciles within 30 s


def start_controller(env: DevEnvironment, extra_args: list[str]) -> ControllerProcess:
    health, metrics, profiler = (free_port(HOST) for _ in range(3))
    log_path = env.work_dir / "logs" / "kcp-run.log"
    process = ManagedProcess(
        "kcp-run",
        [
            sys.executable,
            "-m",
            "kcp",
            "run",
            f"--kubeconfig={env.kubeconfig}",
            f"--health-addr={HOST}:{health}",
            f"--metrics-bind-addr={HOST}:{metrics}",
            f"--profiler-address={HOST}:{profiler}",
            *extra_args,
        ],
        log_path=log_path,
    )
    process.start()
    running = ControllerProcess(
        process,
        health_url=f"http://{HOST}:{health}/readyz",
        metrics_url=f"http://{HOST}:{metrics}/metrics",
        profiler_url=f"http://{HOST}:{profiler}/debug/pprof/profile?seconds=10",
    )
    wait_until(
        lambda: _ready(running.health_url), timeout=60, what="kcp run /readyz", process=process
    )
    env.notes.extend(
        [
            f"controller: kcp run (pid {process.pid}), log {log_path}",
            f"  ready:    {running.health_url}",
            f"  metrics:  {running.metrics_url}",
            f"  profile:  curl '{running.profiler_url}' > profile.json  (open in speedscope)",
        ]
    )
    return running


def _ready(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
        return bool(response.status == 200)


def run(args: argparse.Namespace) -> int:
    options = DevOptions(
        kubeconfig=args.kubeconfig,
        samples_dir=None if args.no_samples else args.samples_dir,
        namespace=args.namespace,
        work_dir=args.work_dir,
        refresh=args.refresh,
        duration=args.duration,
        report_available=True,
    )
    return run_dev(lambda env: start_controller(env, list(args.controller_arg)), options)
