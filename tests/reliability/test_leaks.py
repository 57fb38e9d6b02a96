"""No leaks: control planes come and go; what `kcp run` holds returns to its baseline.

The whole reconcile path in a real `kcp run` (its own namespace, the
ServiceAccount of `config/rbac/`): control planes with provisioned (never
running) infrastructure are created — certificates, kubeconfig, Machines,
tracker entries — and deleted; the process's threads, sockets,
`kcp_tracker_clusters` and `kcp_tracker_connection_up` series return to
their baseline, read from `/proc` and `/metrics`. RSS growth is reported and must
stay within a small bound. (The tracker's own leak loop, which needs no fleet, is in
test_tracker_leaks.py.)
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kcp import certs
from kcp.api import groups
from kcp.controlplane.cli import connection_pool_size
from kcp.controlplane.controller import CONTROLLER_NAME
from kcp.rest import ApiError, Kube
from kcp.runtime.options import ManagerOptions
from kcp.testing.controlplane import LocalControlPlane
from kcp.tracker import TrackerOptions
from tests.reliability import harness
from tests.reliability.conftest import Summary
from tests.reliability.fleet import Fleet, kcp_name, secret_body, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PROCESS_RSS_BOUND_MIB = 64.0


@contextlib.contextmanager
def namespace_on(control_plane: LocalControlPlane, prefix: str) -> Iterator[str]:
    """A fresh namespace, emptied of finalizers and deleted afterwards."""
    kube = Kube(control_plane.api_client())
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.create(groups.NAMESPACE, None, {"metadata": {"name": name}})
    try:
        yield name
    finally:
        for resource in (groups.KUBEADM_CONTROL_PLANE, groups.MACHINE, groups.CLUSTER):
            with contextlib.suppress(ApiError):
                for obj in kube.list(resource, name):
                    if obj["metadata"].get("finalizers"):
                        kube.merge_patch(
                            resource,
                            name,
                            obj["metadata"]["name"],
                            {"metadata": {"finalizers": None}},
                        )
        with contextlib.suppress(ApiError):
            kube.delete(groups.NAMESPACE, None, name)


@pytest.fixture(scope="module")
def leak_namespace(control_plane: LocalControlPlane) -> Iterator[str]:
    with namespace_on(control_plane, "rel-leaks") as name:
        yield name


TUNING: dict[str, Any] = {
    "reconciler": {"waiting_requeue": 2.0, "not_initialized_requeue": 2.0},
    "tracker": {"probe_interval": 2.0},
}
BOUNDED_POOL = re.compile(
    rf"kcp-tracker-probe_[0-{TrackerOptions().probe_workers - 1}]|kcp-tracker-close_0"
    rf"|kcp-tunnels|{CONTROLLER_NAME}-worker-\d+"
)
"""Threads a bounded pool starts on demand (the tracker's probe workers, its closer, the
one I/O thread all port-forward tunnels share, started with the first tunnel, the
controller's workers, up to its concurrency, that stop once idle)."""
ROUND = 10
"""Control planes in the measured round (after a warm-up of two)."""
SOCKETS_SLACK = 5
MANAGEMENT_POOL = connection_pool_size(ManagerOptions().concurrency, TrackerOptions())
"""The bound of `kcp run`'s management API connection pool at its default concurrency."""
"""Connections bounded pools (the API client's) may add when more reconciles run at once;
a leak of one per cluster would show as at least `ROUND`."""


def _tracked(kcp: harness.KcpProcess) -> float:
    return sum(kcp.metric_samples("kcp_tracker_clusters").values())


def _cas(namespace: str, cluster: str) -> list[dict[str, Any]]:
    """The cluster's CA and service-account Secrets, made here with ECDSA keys (fast)."""
    made = []
    for suffix in ("ca", "etcd", "proxy"):
        pair = certs.new_certificate_authority(f"{suffix}-ca", algorithm="ecdsa-p256")
        made.append(
            secret_body(
                namespace, f"{cluster}-{suffix}", cluster, certs.key_pair_to_secret_data(pair)
            )
        )
    public, private = certs.new_service_account_key("ecdsa-p256")
    made.append(
        secret_body(namespace, f"{cluster}-sa", cluster, {"tls.crt": public, "tls.key": private})
    )
    return made


def _round(fleet: Fleet, kcp: harness.KcpProcess, namespace: str, prefix: str, count: int) -> None:
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        fleet.add_unsimulated_cluster(
            name,
            infrastructure=True,
            namespace=namespace,
            watch=False,
            secrets=_cas(namespace, name),
        )
    wait_for(f"{count} clusters tracked", lambda: _tracked(kcp) >= count, 120, interval=1.0)
    for name in names:
        fleet.kube.delete(groups.KUBEADM_CONTROL_PLANE, namespace, kcp_name(name))
        fleet.kube.delete(groups.CLUSTER, namespace, name)
    wait_for(
        "every control plane deleted and evicted",
        lambda: _tracked(kcp) == 0 and not fleet.kube.list(groups.KUBEADM_CONTROL_PLANE, namespace),
        120,
        interval=1.0,
    )


def test_kcp_run_returns_to_its_baseline_after_clusters_come_and_go(
    fleet: Fleet, leak_namespace: str, summary: Summary, control_plane: LocalControlPlane
) -> None:
    kcp = harness.KcpProcess(
        "leaks",
        kubeconfig=fleet.kcp.kubeconfig,
        work_dir=fleet.work_dir / "leaks",
        extra_args=[f"--namespace={leak_namespace}"],
        tuning=TUNING,
    )
    kcp.start()
    try:
        _round(fleet, kcp, leak_namespace, "warm", 2)
        time.sleep(3)  # channel closes and idle connections settle
        baseline = kcp.proc_status()
        baseline_peers = kcp.sockets_by_peer()
        baseline_threads = kcp.python_threads()
        started = time.monotonic()
        _round(fleet, kcp, leak_namespace, "round", ROUND)
        time.sleep(3)
        final = kcp.proc_status()
        final_peers = kcp.sockets_by_peer()
        final_threads = kcp.python_threads()
        took = time.monotonic() - started
        connection_series = kcp.metric_samples("kcp_tracker_connection_up")
        depth = sum(kcp.metric_samples("workqueue_depth").values())
        keys = sum(kcp.metric_samples("kcp_tracker_keys_generated_total").values())
        assert kcp.crashes == []
    finally:
        kcp.stop()
    growth = (final["rss_kib"] - baseline["rss_kib"]) / 1024
    print(
        f"kcp run: {ROUND} control planes created and deleted in {took:.0f}s; baseline "
        f"{baseline}; final {final}; {keys:.0f} etcd client keys; RSS {growth:+.1f} MiB"
    )
    new_threads = sorted(set(final_threads) - set(baseline_threads))
    pooled = [t for t in new_threads if BOUNDED_POOL.fullmatch(t)]
    print(
        f"Python threads {len(baseline_threads)} -> {len(final_threads)}: new {new_threads} "
        f"({len(pooled)} in bounded pools)"
    )
    leaks = []
    if set(new_threads) - set(pooled):
        leaks.append(f"new threads {sorted(set(new_threads) - set(pooled))}")
    if final["threads"] > baseline["threads"] + len(pooled):
        leaks.append(f"threads {baseline['threads']} -> {final['threads']}")
    # Connections to the management API server come from one pool, which fills up to its
    # bound under load and keeps them (not a leak); any other socket must not stay.
    management = f"127.0.0.1:{control_plane.apiserver_port}"
    pooled_connections = final_peers.get(management, 0)
    others = {peer: n for peer, n in final_peers.items() if peer != management}
    baseline_others = sum(n for peer, n in baseline_peers.items() if peer != management)
    print(f"sockets by peer: baseline {baseline_peers}; final {final_peers}")
    if pooled_connections > MANAGEMENT_POOL:
        leaks.append(f"{pooled_connections} connections to the management API server")
    if sum(others.values()) > baseline_others + SOCKETS_SLACK:
        leaks.append(f"sockets to other peers {baseline_peers} -> {others}")
    if connection_series:
        leaks.append(f"kcp_tracker_connection_up series left: {sorted(connection_series)}")
    if depth:
        leaks.append(f"workqueue_depth {depth}")
    summary.notes.append(
        f"kcp run loop:         {ROUND} control planes, RSS {growth:+.1f} MiB "
        f"(bound {PROCESS_RSS_BOUND_MIB:.0f}), threads {baseline['threads']} -> "
        f"{final['threads']}, sockets {baseline['sockets']} -> {final['sockets']}"
    )
    summary.leaks.extend(f"kcp run: {leak}" for leak in leaks)
    assert leaks == []
    assert growth < PROCESS_RSS_BOUND_MIB
