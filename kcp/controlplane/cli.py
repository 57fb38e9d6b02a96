"""`kcp run`: the KubeadmControlPlane controller, with the flags Cluster API users know.

Manager flags (leader election, `--namespace`, `--watch-filter`,
`--kubeadmcontrolplane-concurrency`, `--sync-period`, `--kube-api-qps`,
`--kube-api-burst`, `--health-addr`, `--metrics-bind-addr`,
`--profiler-address`) come from `kcp.runtime`; this module adds
`--kubeconfig`, the etcd timeouts, transport and access, the health requeue period,
and the logging flags (`--v`, `--log-level`, `--log-format`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kcp.controlplane.scope import ReconcilerOptions
from kcp.etcd import DEFAULT_ETCD_ACCESS, ETCD_ACCESS_MODES, TRANSPORTS
from kcp.runtime.logging import add_logging_arguments, configure_logging_from_args
from kcp.runtime.options import add_manager_arguments, options_from_args, parse_duration
from kcp.tracker.options import TrackerOptions

__all__ = [
    "TRACKER_FLAGS",
    "add_arguments",
    "reconciler_options_from_args",
    "run",
    "tracker_options_from_args",
]

TRACKER_FLAGS = {
    "etcd_dial_timeout_duration": "etcd_dial_timeout",
    "etcd_call_timeout_duration": "etcd_call_timeout",
    "etcd_transport": "etcd_transport",
    "etcd_connections_max": "etcd_connections_max",
}
"""The `TrackerOptions` field each tracker flag (by argparse `dest`) sets, and takes its
default from."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `kcp run`; each default is the option's own (`TrackerOptions`, `kcp.etcd`)."""
    defaults = TrackerOptions()
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG") or None,
        help="kubeconfig of the management cluster (default: $KUBECONFIG, else in-cluster)",
    )
    for stage, seconds in (
        ("dial", defaults.etcd_dial_timeout),
        ("call", defaults.etcd_call_timeout),
    ):
        waits_for = "a connection" if stage == "dial" else "its answer"
        parser.add_argument(
            f"--etcd-{stage}-timeout-duration",
            type=parse_duration,
            default=seconds,
            metavar="DURATION",
            help=f"how long an etcd call waits for {waits_for} (default: {seconds:g}s)",
        )
    parser.add_argument(
        "--etcd-transport",
        choices=TRANSPORTS,
        default=defaults.etcd_transport,
        help="how workload etcd members are reached: 'gateway', etcd's JSON gateway over "
        "HTTPS on the caller's thread (etcd's --enable-grpc-gateway, on by default), or "
        f"'grpc' (default: {defaults.etcd_transport})",
    )
    parser.add_argument(
        "--etcd-access",
        choices=ETCD_ACCESS_MODES,
        default=DEFAULT_ETCD_ACCESS,
        help="how each etcd member (and each Machine's API server, for its certificate "
        "expiry) is reached: 'port-forward' through the workload cluster's API server to "
        "the Pod etcd-<node> (kube-apiserver-<node>) in kube-system, as Cluster API does, "
        "or 'direct' at the node's address, only where kcp can reach node addresses "
        f"(default: {DEFAULT_ETCD_ACCESS})",
    )
    parser.add_argument(
        "--etcd-connections-max",
        type=_positive,
        default=defaults.etcd_connections_max,
        metavar="N",
        help="etcd connections kept open at most, each with its port-forward tunnel: kcp "
        "keeps one per etcd member of the clusters it tracks (plus an eighth), up to N, and "
        "fewer if half the open-file limit cannot hold them (three descriptors each); past "
        "N the least recently used are closed and re-opened when needed "
        f"(default: {defaults.etcd_connections_max})",
    )
    health_requeue = ReconcilerOptions().health_requeue
    parser.add_argument(
        "--health-requeue-duration",
        type=_positive_duration,
        default=health_requeue,
        metavar="DURATION",
        help="how often a healthy control plane is inspected again (its Nodes, Pods and "
        "etcd read, its conditions refreshed), plus up to a fifth of it at random, as "
        "Cluster API's KCP at --sync-period; a health probe that finds its cluster "
        "connected, down, or its API server or etcd changed wakes it at once "
        f"(default: {health_requeue:g}s)",
    )
    add_logging_arguments(parser)
    add_manager_arguments(parser)


def tracker_options_from_args(args: argparse.Namespace) -> TrackerOptions:
    """The `TrackerOptions` the tracker flags describe (the rest keep their defaults)."""
    return TrackerOptions(**{name: getattr(args, dest) for dest, name in TRACKER_FLAGS.items()})


def reconciler_options_from_args(args: argparse.Namespace) -> ReconcilerOptions:
    """The `ReconcilerOptions` the reconciler flags describe (the rest keep their defaults)."""
    return ReconcilerOptions(
        etcd_access=args.etcd_access, health_requeue=args.health_requeue_duration
    )


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0s, got {text}")
    return seconds


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def management_api_client(kubeconfig: str | None, *, connections: int) -> Any:
    """An ApiClient for the management cluster: from `kubeconfig`, else in-cluster.

    A key the kubeconfig embeds stays in memory (`kcp.kubeclient`). Its connection
    pool holds `connections` (the client's default is five per CPU): every
    informer's watch keeps one, and a worker finding the pool full would open and
    discard a TLS connection per request.
    """
    from kcp.kubeclient import in_cluster_api_client, kubeconfig_api_client

    if kubeconfig:
        return kubeconfig_api_client(kubeconfig, connections=connections)
    return in_cluster_api_client(connections=connections)


def connection_pool_size(concurrency: int, tracker: TrackerOptions) -> int:
    """Connections the controller can use at once: watches, workers, probes, and spare."""
    informers, spare = 5, 4  # one watch per informer; events, leases, metrics
    return informers + concurrency + tracker.probe_workers + spare


def run(args: argparse.Namespace) -> int:
    from kcp.controlplane.controller import setup
    from kcp.runtime.logging import get_logger
    from kcp.runtime.malloc import limit_malloc_arenas
    from kcp.runtime.manager import Manager
    from kcp.runtime.openfiles import raise_open_files_limit
    from kcp.tracker.tracker import Tracker

    limit_malloc_arenas()  # before any thread starts
    raise_open_files_limit()  # before the tracker sizes its connections by it
    configure_logging_from_args(args)
    log = get_logger("kcp.run")
    options = options_from_args(args)
    tracker_options = tracker_options_from_args(args)
    api_client = management_api_client(
        args.kubeconfig, connections=connection_pool_size(options.concurrency, tracker_options)
    )
    manager = Manager(options, api_client=api_client)
    tracker = Tracker.for_api_client(api_client, tracker_options, registry=manager.registry)
    setup(
        manager,
        api_client,
        tracker,
        namespace=options.namespace,
        options=reconciler_options_from_args(args),
    )
    log.info(
        "Starting kcp",
        namespace=options.namespace or "*",
        watch_filter=options.watch_filter,
        concurrency=options.concurrency,
        leader_elect=options.leader_elect,
        etcd_access=args.etcd_access,
    )
    try:
        return manager.run_until_signal()
    finally:
        tracker.close()
