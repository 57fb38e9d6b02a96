"""``kcp bench tracker``: what caching one etcd client key per cluster saves.

Against a real etcd with mutual TLS, ``R`` reconcile-equivalent etcd health
checks (``cluster_status``: status of each member, member list, alarms) are run
for each of ``N`` clusters, in two modes, in one process:

- ``cached``: this tracker. Each cluster has its own ``ClusterKey`` and its own
  ``<cluster>-etcd`` Secret (held in memory; all share one etcd and its CA). The
  tracker connects every cluster first (one key each: the warm-up, reported
  separately), then each reconcile takes ``etcd_access`` and asks etcd.
- ``naive``: what Cluster API did before its fix (cluster-api 8602): every
  reconcile parses the CA and, for every etcd client (one per member), generates
  a fresh key, signs a certificate for it and opens a new TLS channel.

With ``--etcd-access`` ``port-forward`` (or ``both``, the default) two more
modes reach the same kind of member through a port-forward via an API server
(``kcp.bench.tracker_tunnels``): ``kept`` (kcp's way: the tracker keeps one
tunnel per cluster and member open and reuses it) and ``capi`` (Cluster API's
pattern: a new port-forward, TLS handshake and etcd client per reconcile, with
the cached key). With ``both`` every mode asks the same member, directly or
through the tunnel.

CPU is this process's (all threads, gRPC's included) from ``time.process_time``;
etcd's own CPU is not counted (the API server's and kubelet's are reported
apart for the tunnel modes). ``cpu_ratio`` is naive over cached CPU per
reconcile in steady state; ``cpu_ratio_including_warmup`` spreads the cached
mode's one-off key generation over the ``R`` reconciles measured;
``capi_over_kept`` and ``kept_over_direct`` compare the tunnel modes.
``kib_per_connection`` (cached and kept) is the RSS one more kept connection adds,
direct or with its tunnel (``kcp.bench.connmemory``); ``kept_over_direct_memory``
is their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModeResult",
    "TrackerBenchmark",
    "add_arguments",
    "describe_clusters",
    "run",
    "run_benchmark",
]

NAMESPACE = "bench"
ACCESS_CHOICES = ("both", "direct", "port-forward")
"""``--etcd-access``: which routes to etcd are measured (direct: cached and naive;
port-forward: kept and capi)."""


@dataclass(frozen=True)
class ModeResult:
    keys_generated: int
    cpu_ms_per_reconcile: float
    wall_ms_per_reconcile: float
    warmup_cpu_ms: float = 0.0
    tunnels_opened: int | None = None
    """Port-forwards opened over the measured reconciles (tunnel modes)."""
    server_cpu_ms_per_reconcile: float | None = None
    """CPU of the API server and the kubelet per reconcile (tunnel modes)."""
    kib_per_connection: float | None = None
    """RSS one kept connection adds, with its tunnel if any (``kcp.bench.connmemory``;
    cached and kept modes)."""

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "keys_generated": self.keys_generated,
            "cpu_ms_per_reconcile": round(self.cpu_ms_per_reconcile, 4),
            "wall_ms_per_reconcile": round(self.wall_ms_per_reconcile, 4),
            "warmup_cpu_ms": round(self.warmup_cpu_ms, 3),
        }
        if self.tunnels_opened is not None:
            found["tunnels_opened"] = self.tunnels_opened
        if self.server_cpu_ms_per_reconcile is not None:
            found["server_cpu_ms_per_reconcile"] = round(self.server_cpu_ms_per_reconcile, 4)
        if self.kib_per_connection is not None:
            found["kib_per_connection"] = round(self.kib_per_connection, 1)
        return found


@dataclass(frozen=True)
class TrackerBenchmark:
    clusters: int
    reconciles: int
    key_algorithm: str
    etcd_members: int
    cached: ModeResult | None
    """Direct, the tracker's cached key and pooled connections (None: not measured)."""
    naive: ModeResult | None
    """Direct, a key, certificate and connection per reconcile (None: not measured)."""
    kept: ModeResult | None = None
    """Port-forward, kcp's way: tunnels kept open and reused (None: not measured)."""
    capi: ModeResult | None = None
    """Port-forward, Cluster API's pattern: a new tunnel and client per reconcile."""

    @property
    def access(self) -> str:
        direct, tunnelled = self.cached is not None, self.kept is not None
        return "both" if direct and tunnelled else "direct" if direct else "port-forward"

    @property
    def cpu_ratio(self) -> float | None:
        if self.naive is None or self.cached is None:
            return None
        return self.naive.cpu_ms_per_reconcile / max(self.cached.cpu_ms_per_reconcile, 1e-9)

    @property
    def cpu_ratio_including_warmup(self) -> float | None:
        if self.naive is None or self.cached is None:
            return None
        total = self.clusters * self.reconciles
        cached = self.cached.cpu_ms_per_reconcile + self.cached.warmup_cpu_ms / max(total, 1)
        return self.naive.cpu_ms_per_reconcile / max(cached, 1e-9)

    @property
    def capi_over_kept(self) -> float | None:
        """CPU per reconcile, a new tunnel each time over kept tunnels."""
        return _ratio(self.capi, self.kept)

    @property
    def kept_over_direct(self) -> float | None:
        """CPU per reconcile, kept tunnels over direct pooled connections."""
        return _ratio(self.kept, self.cached)

    @property
    def capi_over_direct(self) -> float | None:
        return _ratio(self.capi, self.cached)

    @property
    def kept_over_direct_memory(self) -> float | None:
        """RSS per kept connection, through a tunnel over direct."""
        kept = self.kept.kib_per_connection if self.kept else None
        direct = self.cached.kib_per_connection if self.cached else None
        if kept is None or direct is None:
            return None
        return kept / max(direct, 1e-9)

    def modes(self) -> list[tuple[str, ModeResult]]:
        found = (
            ("cached", self.cached),
            ("naive", self.naive),
            ("kept", self.kept),
            ("capi", self.capi),
        )
        return [(name, mode) for name, mode in found if mode is not None]

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "clusters": self.clusters,
            "reconciles": self.reconciles,
            "key_algorithm": self.key_algorithm,
            "etcd_members": self.etcd_members,
            "etcd_access": self.access,
            **{name: mode.as_dict() for name, mode in self.modes()},
        }
        ratios = {
            "cpu_ratio": self.cpu_ratio,
            "cpu_ratio_including_warmup": self.cpu_ratio_including_warmup,
            "capi_over_kept": self.capi_over_kept,
            "kept_over_direct": self.kept_over_direct,
            "capi_over_direct": self.capi_over_direct,
            "kept_over_direct_memory": self.kept_over_direct_memory,
        }
        result.update({k: round(v, 2) for k, v in ratios.items() if v is not None})
        return {"tracker": result}

    def table(self) -> str:
        rows = [
            f"tracker: {self.clusters} clusters x {self.reconciles} reconciles, "
            f"{self.key_algorithm} client keys, etcd with {self.etcd_members} member(s), "
            f"etcd access {self.access}",
            describe_clusters(tunnelled=self.kept is not None),
            f"{'mode':<8} {'route':<13} {'keys generated':>15} {'CPU ms/reconcile':>17} "
            f"{'wall ms/reconcile':>18} {'tunnels opened':>15} {'server CPU ms/rec':>18} "
            f"{'KiB/connection':>15}",
        ]
        for name, mode in self.modes():
            tunnels = "-" if mode.tunnels_opened is None else str(mode.tunnels_opened)
            server = mode.server_cpu_ms_per_reconcile
            kib = mode.kib_per_connection
            rows.append(
                f"{name:<8} {_ROUTES[name]:<13} {mode.keys_generated:>15} "
                f"{mode.cpu_ms_per_reconcile:>17.3f} {mode.wall_ms_per_reconcile:>18.3f} "
                f"{tunnels:>15} {'-' if server is None else f'{server:.3f}':>18} "
                f"{'-' if kib is None else f'{kib:.1f}':>15}"
            )
        if self.cpu_ratio is not None and self.cached is not None:
            rows.append(
                f"CPU ratio naive/cached: steady state {self.cpu_ratio:.1f}; including the "
                f"cached warm-up ({self.cached.warmup_cpu_ms:.0f} ms CPU, one key per cluster, "
                f"spread over the {self.clusters * self.reconciles} reconciles measured): "
                f"{self.cpu_ratio_including_warmup:.1f}"
            )
        if self.capi_over_kept is not None:
            rows.append(
                f"CPU ratio capi/kept (a new port-forward per reconcile over kept tunnels): "
                f"{self.capi_over_kept:.1f}"
            )
        if self.kept_over_direct is not None and self.capi_over_direct is not None:
            rows.append(
                f"CPU ratio kept/direct: {self.kept_over_direct:.2f}; "
                f"capi/direct: {self.capi_over_direct:.1f}"
            )
        memory = self.kept_over_direct_memory
        if memory is not None and self.kept is not None and self.cached is not None:
            rows.append(
                f"RSS per kept connection: {self.kept.kib_per_connection:.1f} KiB through a "
                f"tunnel, {self.cached.kib_per_connection:.1f} KiB direct (x{memory:.2f})"
            )
        return "\n".join(rows)


_ROUTES = {
    "cached": "direct",
    "naive": "direct",
    "kept": "port-forward",
    "capi": "port-forward",
}


def describe_clusters(*, tunnelled: bool) -> str:
    """What the benchmark's clusters are: its ratios hold for this setup only."""
    text = "  clusters: all share one etcd and its CA (each its own client key and Secret)"
    if tunnelled:
        text += "; port-forwards go through the management API server and one kubelet"
    return text


def _ratio(numerator: ModeResult | None, denominator: ModeResult | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return numerator.cpu_ms_per_reconcile / max(denominator.cpu_ms_per_reconcile, 1e-9)


def _run_cached(
    ca: Any, endpoints: Sequence[str], clusters: int, reconciles: int, algorithm: Any
) -> ModeResult:
    from prometheus_client import CollectorRegistry

    from kcp.bench.connmemory import kept_connection_kib
    from kcp.certs import key_pair_to_secret_data
    from kcp.etcd import DIRECT
    from kcp.tracker import ClusterKey, InMemorySecrets, NotConnected, Tracker, TrackerOptions

    secrets = InMemorySecrets()
    keys = [ClusterKey(NAMESPACE, f"c{i}", str(uuid.uuid4())) for i in range(clusters)]
    ca_data = key_pair_to_secret_data(ca)
    for key in keys:
        secrets.put(NAMESPACE, f"{key.name}-etcd", ca_data)
    options = TrackerOptions(
        capacity=max(clusters, 1000),
        key_algorithm=algorithm,
        probe_interval=None,  # measure reconciles, not background probes
    )
    tracker = Tracker(secrets, options, registry=CollectorRegistry())
    try:
        cpu = time.process_time()
        for key in keys:
            tracker.track(key, etcd_endpoints=endpoints)
        pending = list(keys)
        deadline = time.monotonic() + 60 + clusters * 0.5
        while pending:
            waiting = []
            for key in pending:
                try:
                    tracker.etcd_access(key, endpoints)
                except NotConnected as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster {key} did not connect: {exc}") from None
                    waiting.append(key)
            pending = waiting
            if pending:
                time.sleep(0.05)
        warmup_cpu = time.process_time() - cpu

        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(reconciles):
            for key in keys:
                status = tracker.etcd_access(key, endpoints).cluster_status()
                if not status.healthy:
                    raise RuntimeError(f"etcd unhealthy for {key}: {status.errors}")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        total = clusters * reconciles
        tls = [tracker.etcd_access(key, endpoints).tls for key in keys]
        kib = kept_connection_kib(
            tls, endpoints[0], dialer=DIRECT, transport=options.etcd_transport
        )
        return ModeResult(
            keys_generated=tracker.stats().keys_generated,
            cpu_ms_per_reconcile=cpu * 1000 / total,
            wall_ms_per_reconcile=wall * 1000 / total,
            warmup_cpu_ms=warmup_cpu * 1000,
            kib_per_connection=kib,
        )
    finally:
        tracker.close()


def _run_naive(
    ca: Any, endpoints: Sequence[str], clusters: int, reconciles: int, algorithm: Any
) -> ModeResult:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    from kcp.certs import (
        generate_private_key,
        issue_certificate,
        key_pair_from_secret_data,
        key_pair_to_secret_data,
    )
    from kcp.etcd import EtcdClient, EtcdTLS, cluster_status
    from kcp.tracker import TrackerOptions

    transport = TrackerOptions().etcd_transport
    secret_data = [key_pair_to_secret_data(ca) for _ in range(clusters)]
    keys_generated = 0
    # Closing a just-used gRPC channel blocks ~0.2 s of wall time (no CPU): close clients
    # aside, and wait for that before reading the CPU clock so their cost is counted.
    closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bench-close")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(reconciles):
        for i in range(clusters):
            etcd_ca = key_pair_from_secret_data(
                secret_data[i], secret_name=f"{NAMESPACE}/c{i}-etcd", skip_rsa_validation=True
            )
            clients = []
            for endpoint in endpoints:  # a fresh key for every etcd client
                key = generate_private_key(algorithm)
                keys_generated += 1
                pair = issue_certificate(
                    etcd_ca,
                    common_name="cluster-api.x-k8s.io",
                    validity=timedelta(hours=24),
                    private_key=key,
                )
                tls = EtcdTLS(ca_pem=etcd_ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)
                # The product's transport, so only the key handling differs.
                clients.append(EtcdClient.open(endpoint, tls, transport=transport))
            try:
                status = cluster_status(clients)
            finally:
                for client in clients:
                    closer.submit(client.close)
            if not status.healthy:
                raise RuntimeError(f"etcd unhealthy for c{i}: {status.errors}")
    closer.shutdown(wait=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total = clusters * reconciles
    return ModeResult(
        keys_generated=keys_generated,
        cpu_ms_per_reconcile=cpu * 1000 / total,
        wall_ms_per_reconcile=wall * 1000 / total,
    )


def run_benchmark(
    clusters: int,
    reconciles: int,
    *,
    key_algorithm: str = "rsa-2048",
    etcd_members: int = 1,
    etcd_access: str = "direct",
    env: Any = None,
) -> TrackerBenchmark:
    """Start an etcd, run the modes of ``etcd_access`` against it, stop it.

    The port-forward modes need an API server: ``env``'s (a ``BenchEnvironment``), or a
    management cluster started here for the run."""
    from kcp.certs import KEY_ALGORITHMS, new_certificate_authority
    from kcp.testing.etcd_cluster import EtcdCluster

    if clusters < 1 or reconciles < 1:
        raise ValueError("clusters and reconciles must be at least 1")
    if key_algorithm not in KEY_ALGORITHMS:
        raise ValueError(f"key algorithm must be one of {', '.join(KEY_ALGORITHMS)}")
    if etcd_access not in ACCESS_CHOICES:
        raise ValueError(f"etcd access must be one of {', '.join(ACCESS_CHOICES)}")
    algorithm: Any = key_algorithm
    if etcd_access != "direct":
        if etcd_members != 1:
            raise ValueError("the port-forward modes run against one etcd member")
        return _run_with_tunnels(clusters, reconciles, key_algorithm, etcd_access, env)
    # kubeadm's etcd CA is RSA-2048, so every signature below is an RSA one, as in a cluster.
    ca = new_certificate_authority("kcp-bench-etcd-ca", algorithm="rsa-2048")
    with EtcdCluster(ca, members=etcd_members, name="kcp-bench-etcd") as etcd:
        endpoints = etcd.endpoints
        cached = _run_cached(ca, endpoints, clusters, reconciles, algorithm)
        naive = _run_naive(ca, endpoints, clusters, reconciles, algorithm)
    return TrackerBenchmark(clusters, reconciles, key_algorithm, etcd_members, cached, naive)


def _run_with_tunnels(
    clusters: int, reconciles: int, key_algorithm: str, etcd_access: str, env: Any
) -> TrackerBenchmark:
    """Every mode of ``etcd_access`` against one member reachable both ways."""
    import contextlib

    from kcp.bench.tracker_tunnels import run_tunnelled, tunnelled_etcd

    algorithm: Any = key_algorithm
    with contextlib.ExitStack() as stack:
        if env is None:
            from kcp.bench.environment import management_cluster
            from kcp.bench.progress import Progress

            env = stack.enter_context(management_cluster(Progress(enabled=False)))
        etcd = stack.enter_context(tunnelled_etcd(env))
        direct = [etcd.direct_endpoint]
        cached = naive = None
        if etcd_access == "both":
            cached = _run_cached(etcd.ca, direct, clusters, reconciles, algorithm)
            naive = _run_naive(etcd.ca, direct, clusters, reconciles, algorithm)
        tunnelled = run_tunnelled(etcd, clusters, reconciles, algorithm)
        kept, capi = ModeResult(**tunnelled["kept"]), ModeResult(**tunnelled["capi"])
    return TrackerBenchmark(
        clusters, reconciles, key_algorithm, 1, cached, naive, kept=kept, capi=capi
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clusters", type=int, default=100, help="workload clusters (100)")
    parser.add_argument(
        "--reconciles", type=int, default=10, help="reconciles per cluster and mode (10)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--key-algorithm",
        default="rsa-2048",
        choices=("rsa-2048", "ecdsa-p256"),
        help="etcd client key algorithm (rsa-2048, as Cluster API)",
    )
    parser.add_argument(
        "--etcd-members", type=int, default=1, choices=(1, 3), help="etcd members (1)"
    )
    parser.add_argument(
        "--etcd-access",
        default="both",
        choices=ACCESS_CHOICES,
        help="routes measured: direct (cached, naive), port-forward through an API server "
        "(kept tunnels, a new one per reconcile as Cluster API), or both (default; one "
        "member, a local management cluster is started)",
    )


def run(args: argparse.Namespace) -> int:
    import logging

    import structlog

    # Only problems: the tracker logs a line per cluster connected.
    previous = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        result = run_benchmark(
            args.clusters,
            args.reconciles,
            key_algorithm=args.key_algorithm,
            etcd_members=args.etcd_members,
            etcd_access="direct" if args.etcd_members != 1 else args.etcd_access,
        )
    finally:
        structlog.configure(**previous)
    print(result.table())
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return 0
