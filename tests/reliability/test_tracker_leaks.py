"""No leaks in the tracker: clusters come and go by the thousand; what it holds returns to
its baseline. (The fleet-wide leak checks are in test_leaks.py; these use no fleet, so they
run beside it on another pytest-xdist worker.)

1. The tracker facade with real management-cluster objects: 2,000 Cluster
   objects (20,000 with `--soak`) are created on the API server in waves; for
   each the tracker is asked for etcd access as a reconcile would (private key,
   client certificate, etcd channel to a real TLS etcd, a status call through
   it for every tenth, a workload API client for every tenth), then the wave is
   deleted and the Cluster informer's DELETED events evict them. This runs in a
   child process (`tracker_loop.py`) so that its RSS is the tracker's alone. After
   warm-up waves the baseline is taken; at the end tracker entries, keys,
   certificates, open etcd channels, threads, per-cluster metric series and
   live `ClusterEntry` objects must be back to it. Keys are ECDSA here (an RSA
   key costs ~30 ms; what is cached and dropped is the same).
2. A cluster evicted while its health check waits on a silent API server leaves no
   etcd channel behind.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.testing.controlplane import LocalControlPlane
from kcp.tracker import ClusterKey, InMemorySecrets, Tracker, TrackerOptions
from tests.reliability.summary import Summary
from tests.reliability.test_leaks import namespace_on

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

WARM_UP = 5
"""Waves of 100 before the baseline: the allocators (gRPC, OpenSSL, Python) grow by
20-60 MiB over the first few hundred clusters, then level off (measured over 6,000: about
+2 MiB per thousand, the tracker's tombstones of evicted UIDs, kept an hour, bounded)."""
RSS_BOUND_MIB = 40.0
"""RSS growth of the loop's process allowed from the baseline to the end of 2,000 clusters
(measured 10-30 MiB: the allocators are still settling) ..."""
RSS_PER_THOUSAND_MIB = 3.0
"""... and per thousand clusters beyond (`--soak`; measured about 2)."""
OBJECTS_PER_CLUSTER = 5
"""Python objects a deleted cluster may leave behind (its tombstone: key and cache link)."""
LOOP = Path(__file__).with_name("tracker_loop.py")


@contextlib.contextmanager
def running_loop(control_plane: LocalControlPlane, clusters: int) -> Iterator[Any]:
    """`tracker_loop.py` over `clusters` clusters in a namespace of its own, running."""
    with namespace_on(control_plane, "rel-loop") as namespace:
        child = subprocess.Popen(
            [
                sys.executable,
                str(LOOP),
                f"--server={control_plane.server_url}",
                f"--pki={control_plane.work_dir / 'pki'}",
                f"--namespace={namespace}",
                f"--clusters={clusters}",
                f"--warm-up={WARM_UP}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=control_plane.work_dir,
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(10)


@pytest.mark.parametrize(
    "clusters", [2000, pytest.param(20000, marks=pytest.mark.soak)], ids=lambda n: f"{n}"
)
def test_the_tracker_forgets_deleted_clusters(
    control_plane: LocalControlPlane, summary: Summary, clusters: int
) -> None:
    """`tracker_loop.py` in a child process: its RSS is the tracker's, not the simulator's."""
    with running_loop(control_plane, clusters) as child:
        output, _ = child.communicate(timeout=120 + clusters * 0.1)
    found = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert child.returncode == 0 and found, output[-4000:]
    result = json.loads(found[-1].removeprefix("RESULT "))
    baseline, final = result["baseline"], result["final"]
    measured = clusters - WARM_UP * 100
    growth = final["rss"] - baseline["rss"]
    second_half = final["rss"] - result["middle_rss"]
    objects = final["objects"] - baseline["objects"]
    leaks = list(result["leaks"])
    if objects > OBJECTS_PER_CLUSTER * measured:
        leaks.append(f"{objects} more Python objects after {measured} clusters")
    print(
        f"{clusters} clusters created, tracked and deleted in {result['took']:.0f}s "
        f"({result['keys_generated']} keys, {result['certificates_issued']} certificates, "
        f"{result['status_calls']} etcd status calls; channels closed {result['drain']:.1f}s "
        f"after the last eviction; {result['held_at_eviction']} evicted entries still "
        f"referenced at the first look, settled after {result['entries_freed_after']:.1f}s); "
        f"baseline {baseline}; final {final}; RSS "
        f"{growth:+.1f} MiB over the last {measured} ({second_half:+.1f} MiB over the last "
        f"half of them), {objects:+d} Python objects"
    )
    summary.notes.append(
        f"tracker loop:         {clusters} clusters in {result['took']:.0f}s, RSS "
        f"{growth:+.1f} MiB over the last {measured} ({second_half:+.1f} over the last "
        f"{measured // 2}; bound {RSS_BOUND_MIB:.0f}), threads "
        f"{len(baseline['threads'])} -> {len(final['threads'])}, etcd channels "
        f"{baseline['channels']} -> {final['channels']}"
    )
    summary.leaks.extend(f"tracker: {leak}" for leak in leaks)
    assert result["keys_generated"] == clusters
    assert leaks == []
    assert growth < RSS_BOUND_MIB + RSS_PER_THOUSAND_MIB * max(0, clusters - 2000) / 1000


@contextlib.contextmanager
def silent_api_server() -> Iterator[int]:
    """A port on which TCP connections are accepted and never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, name="silent-api-server", daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_a_probe_racing_the_eviction_leaves_no_etcd_channel(summary: Summary) -> None:
    """A cluster deleted while its health check waits on a silent API server: the etcd
    channel the check opens afterwards is closed too (fixed in kcp/tracker/checks.py)."""
    etcd_ca = certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")
    ca = certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256")
    admin = certs.issue_certificate(
        ca,
        common_name="kubernetes-admin",
        organizations=("system:masters",),
        algorithm="ecdsa-p256",
    )
    with silent_api_server() as port:
        secrets = InMemorySecrets()
        secrets.put("ns", "c-etcd", certs.key_pair_to_secret_data(etcd_ca))
        secrets.put(
            "ns",
            "c-kubeconfig",
            {
                "value": certs.build_kubeconfig(
                    cluster_name="c",
                    server=f"https://127.0.0.1:{port}",
                    ca_pem=ca.cert_pem,
                    client_cert_pem=admin.cert_pem,
                    client_key_pem=admin.key_pem,
                )
            },
        )
        tracker = Tracker(
            secrets,
            TrackerOptions(probe_interval=1.0, probe_timeout=2.0, key_algorithm="ecdsa-p256"),
            registry=CollectorRegistry(),
        )
        try:
            key = ClusterKey("ns", "c", str(uuid.uuid4()))
            tracker.track(key, etcd_endpoints=["127.0.0.1:1"])
            time.sleep(0.5)  # the first check now waits on the silent API server
            assert tracker.evict(key)
            time.sleep(3.0)  # the check times out, then reaches its etcd probe
            left = len(tracker.etcd_pool)
        finally:
            tracker.close()
    if left:
        summary.leaks.append(f"tracker: {left} etcd channel(s) of an evicted cluster")
    assert left == 0
