"""`kcp sim`: the local infrastructure provider in the foreground, with a live status table.

Standalone it starts its own management cluster and applies `config/samples/`;
with `--kubeconfig` it serves an existing one (e.g. `kcp envtest`'s). It runs no
KubeadmControlPlane controller: Machines appear once one runs beside it (`kcp run`),
or use `kcp dev`, which starts both (`kcp.sim.dev.run_dev(controller_factory)`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kcp.sim.dev import SAMPLES_DIR, DevOptions, run_dev

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="serve this management cluster (default: start a local one)",
    )
    parser.add_argument(
        "--samples-dir", type=Path, default=SAMPLES_DIR, help="manifests to apply at start"
    )
    parser.add_argument("--no-samples", action="store_true", help="apply no manifests")
    parser.add_argument(
        "-n", "--namespace", default="default", help="namespace for the samples (default: default)"
    )
    parser.add_argument(
        "--watch-namespace",
        help="simulate only this namespace's clusters (default: every namespace)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="keep certificates, data and logs here (default: temp dirs)"
    )
    parser.add_argument(
        "--refresh", type=float, default=2.0, help="seconds between status redraws (default: 2)"
    )
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: at Ctrl-C)"
    )


def run(args: argparse.Namespace) -> int:
    options = DevOptions(
        kubeconfig=args.kubeconfig,
        samples_dir=None if args.no_samples else args.samples_dir,
        namespace=args.namespace,
        watch_namespace=args.watch_namespace,
        work_dir=args.work_dir,
        refresh=args.refresh,
        duration=args.duration,
    )
    return run_dev(None, options)
