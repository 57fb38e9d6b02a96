"""`kcp envtest`: a local management control plane in the foreground until Ctrl-C.

The first line on standard output is `KUBECONFIG=<path>` once the API server is
ready, so scripts can `read` it; everything else goes to standard error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kcp.testing.controlplane import ControlPlaneOptions, LocalControlPlane
from kcp.testing.processes import install_signal_handlers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-watch-list",
        action="store_true",
        help="start kube-apiserver with the WatchList feature gate off",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="directory for certificates, kubeconfig, data and logs (default: a new temp dir)",
    )
    parser.add_argument(
        "--no-crds",
        action="store_true",
        help="do not install kcp's CRDs (config/crd) nor Cluster API's",
    )


def run(args: argparse.Namespace) -> int:
    install_signal_handlers()
    options = ControlPlaneOptions(watch_list=not args.no_watch_list, work_dir=args.work_dir)
    if args.no_crds:
        options.crd_dir = None
        options.cluster_api_crds = False
    started = time.monotonic()
    plane = LocalControlPlane(options)
    try:
        plane.start()
        print(f"KUBECONFIG={plane.kubeconfig_path}", flush=True)
        print(
            f"kube-apiserver {plane.server_url} ready in {time.monotonic() - started:.1f}s "
            f"(WatchList={'on' if options.watch_list else 'off'}); logs in "
            f"{plane.work_dir / 'logs'}\n"
            f"try: kubectl --kubeconfig {plane.kubeconfig_path} get crds\n"
            "Ctrl-C stops everything.",
            file=sys.stderr,
            flush=True,
        )
        while True:
            # Short naps: the main thread must come back to run the SIGINT handler even
            # when the kernel hands the signal to another thread of the process.
            time.sleep(1.0)
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping kube-apiserver and etcd ...", file=sys.stderr, flush=True)
        plane.stop()
