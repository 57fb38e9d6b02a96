"""`kcp bench tracker`'s port-forward side: etcd reached through the workload API server.

`tunnelled_etcd(env)` is one etcd member as a kubeadm node runs it (its own
loopback address, port 2379) behind the API server of `env`, which stands in
for every cluster's workload API server: a Node for the member with its
kubelet (`kcp.bench.kubelet`) and the Pod `kube-system/etcd-<node>`, so that
`GET .../pods/etcd-<node>/portforward` reaches the member as on real
infrastructure. `run_tunnelled` measures reconciles through it in two ways,
with one tracker warmed up once (a key per cluster, its tunnel opened):

- `kept`: kcp's — the tracker's pooled etcd connections over tunnels it keeps
  open (one per cluster and member);
- `capi`: Cluster API's pattern — every reconcile opens a new port-forward (a
  TCP connection and TLS handshake with the API server, the upgrade), a new
  etcd client and its TLS handshake inside the tunnel, and closes them after;
  the client key and certificate are cached (as Cluster API caches them now).

CPU is this process's, as for the direct modes; the API server's and the
kubelet's CPU over the same reconciles is reported beside it (`server_cpu_ms`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["TunnelledEtcd", "run_tunnelled", "tunnelled_etcd"]

Pattern = Literal["kept", "capi"]
NAMESPACE = "bench"


@dataclass(frozen=True)
class TunnelledEtcd:
    """What the port-forward modes need, and the direct route to the same member."""

    ca: Any
    """`kcp.certs.KeyPair` of the member's etcd CA."""
    direct_endpoint: str
    """`host:2379` of the member (what `--etcd-access=direct` dials)."""
    pod_endpoint: str
    """`kube-system/etcd-<node>:2379` (what a port-forward reaches)."""
    kubeconfig: bytes
    """An admin kubeconfig of the API server standing in for every workload API server."""
    server_pids: tuple[int, ...]
    """The API server's and the kubelet's processes: their CPU is reported too."""


@contextlib.contextmanager
def tunnelled_etcd(env: Any) -> Iterator[TunnelledEtcd]:
    """A one-member etcd behind `env`'s API server and a kubelet; stopped afterwards."""
    from kcp.bench.fleet import SharedEtcd, steady_workload
    from kcp.bench.kubelet import SharedKubelet

    with SharedEtcd(standard_port=True) as etcd:
        workload = steady_workload(env, etcd)
        with SharedKubelet.for_environment(env, etcd) as kubelet:
            member = etcd.cluster.members[0]
            pids = (env.plane.apiserver_pid, kubelet.pid)
            yield TunnelledEtcd(
                ca=etcd.ca,
                direct_endpoint=f"{member.host}:{member.client_port}",
                pod_endpoint=f"kube-system/etcd-{member.name}:2379",
                kubeconfig=workload.kubeconfig,
                server_pids=tuple(p for p in pids if p is not None),
            )


def _servers_cpu(pids: tuple[int, ...]) -> float:
    from kcp.bench.procstat import cpu_seconds

    return sum(cpu_seconds(pid) for pid in pids)


def run_tunnelled(
    etcd: TunnelledEtcd, clusters: int, reconciles: int, algorithm: Any
) -> dict[Pattern, dict[str, Any]]:
    """`ModeResult` fields of each pattern for `clusters` x `reconciles` etcd health checks
    through tunnels: one tracker, warmed up once (a key per cluster, its tunnel opened),
    measured keeping its tunnels, then opening one per reconcile."""
    from prometheus_client import CollectorRegistry

    from kcp.bench.connmemory import kept_connection_kib, tunnel_dialer
    from kcp.certs import key_pair_to_secret_data
    from kcp.etcd import EtcdClient, cluster_status
    from kcp.tracker import ClusterKey, InMemorySecrets, NotConnected, Tracker, TrackerOptions

    endpoints = [etcd.pod_endpoint]
    secrets = InMemorySecrets()
    keys = [ClusterKey(NAMESPACE, f"c{i}", str(uuid.uuid4())) for i in range(clusters)]
    ca_data = key_pair_to_secret_data(etcd.ca)
    for key in keys:
        secrets.put(NAMESPACE, f"{key.name}-etcd", ca_data)
        secrets.put(NAMESPACE, f"{key.name}-kubeconfig", {"value": etcd.kubeconfig})
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
        deadline = time.monotonic() + 60 + clusters * 0.5
        pending = list(keys)
        while pending:
            waiting = []
            for key in pending:
                try:
                    access = tracker.etcd_access(key, endpoints)
                except NotConnected as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster {key} did not connect: {exc}") from None
                    waiting.append(key)
                    continue
                _healthy(key, access.cluster_status())  # the cluster's tunnel, kept open
            pending = waiting
            if pending:
                time.sleep(0.05)
        warmup_cpu = time.process_time() - cpu

        def reconcile_kept(key: ClusterKey) -> Any:
            return tracker.etcd_access(key, endpoints).cluster_status()

        def reconcile_capi(key: ClusterKey) -> Any:
            """A new port-forward, TLS handshake and client, closed afterwards."""
            access = tracker.etcd_access(key, endpoints)
            clients = [
                EtcdClient.open(
                    endpoint,
                    access.tls,
                    timeouts=access.timeouts,
                    transport=options.etcd_transport,
                    dialer=access.dialer,
                )
                for endpoint in endpoints
            ]
            try:
                return cluster_status(clients)
            finally:
                for client in clients:
                    client.close()

        found: dict[Pattern, dict[str, Any]] = {}
        patterns: tuple[tuple[Pattern, Callable[[ClusterKey], Any]], ...] = (
            ("kept", reconcile_kept),
            ("capi", reconcile_capi),
        )
        for pattern, reconcile in patterns:
            opened_before = tracker.tunnel_stats().opened
            servers = _servers_cpu(etcd.server_pids)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(reconciles):
                for key in keys:
                    _healthy(key, reconcile(key))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            servers = _servers_cpu(etcd.server_pids) - servers
            total = clusters * reconciles
            found[pattern] = {
                "keys_generated": tracker.stats().keys_generated,
                "cpu_ms_per_reconcile": cpu * 1000 / total,
                "wall_ms_per_reconcile": wall * 1000 / total,
                "warmup_cpu_ms": warmup_cpu * 1000,
                "tunnels_opened": tracker.tunnel_stats().opened - opened_before,
                "server_cpu_ms_per_reconcile": servers * 1000 / total,
            }
        tls = [tracker.etcd_access(key, endpoints).tls for key in keys]
        with tunnel_dialer(etcd.kubeconfig, 2 * clusters + 16) as dialer:
            found["kept"]["kib_per_connection"] = kept_connection_kib(
                tls, etcd.pod_endpoint, dialer=dialer, transport=options.etcd_transport
            )
        return found
    finally:
        tracker.close()


def _healthy(key: Any, status: Any) -> None:
    if not status.healthy:
        raise RuntimeError(f"etcd unhealthy for {key}: {status.errors}")
