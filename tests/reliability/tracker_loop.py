"""The tracker leak loop, in a child process of its own so that its RSS is the tracker's.

    python tests/reliability/tracker_loop.py --server URL --pki DIR --namespace NS \
        --clusters 2000 --warm-up 5

Creates the Cluster objects on the management API server in waves of `WAVE`;
for each, asks a `Tracker` for etcd access as a reconcile would (key,
certificate, a channel to a real TLS etcd started here, a status call for every
tenth, a workload API client for every tenth), deletes the wave (the Cluster
informer's DELETED events evict), and prints one line `RESULT {json}`: the
snapshots before the measured waves and after them, timings and counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from kcp import certs
from kcp.api import groups
from kcp.rest import Kube, Resource
from kcp.runtime.informer import Informer
from kcp.testing.etcd_cluster import EtcdCluster
from kcp.tracker import ClusterKey, InMemorySecrets, NotConnected, Tracker, TrackerOptions
from kcp.tracker.entry import ClusterEntry

CLUSTERS = Resource("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
WAVE = 100
WARM_UP = 5
"""Waves before the baseline: the allocators (gRPC, OpenSSL, Python) grow by 20-60 MiB
over the first few hundred clusters and then level off (measured over 6,000: +2 MiB per
thousand, the tracker's tombstones of evicted UIDs, kept an hour, bounded)."""
PER_CLUSTER_SERIES = ("kcp_tracker_connection_up",)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def series(registry: CollectorRegistry, names: tuple[str, ...]) -> int:
    return sum(1 for family in registry.collect() for s in family.samples if s.name in names)


@dataclass
class Snapshot:
    entries: int
    keys: int
    certificates: int
    channels: int
    threads: list[str]
    series: int
    live_entries: int
    objects: int
    rss: float

    def leaks_against(self, baseline: Snapshot) -> list[str]:
        found = []
        for name in ("entries", "keys", "certificates", "series", "live_entries"):
            if getattr(self, name) > 0:
                found.append(f"{name}: {getattr(self, name)} left")
        if self.channels > baseline.channels:
            found.append(f"etcd channels: {baseline.channels} -> {self.channels}")
        if len(self.threads) > len(baseline.threads):
            extra = sorted(set(self.threads) - set(baseline.threads)) or self.threads
            found.append(f"threads: {len(baseline.threads)} -> {len(self.threads)} ({extra})")
        return found


class Loop:
    """The tracker, its Cluster informer and the waves."""

    def __init__(self, server: str, pki: Path, namespace: str, etcd: EtcdCluster) -> None:
        self.namespace = namespace
        self.kube = Kube(api_client(server, pki), field_manager="reliability-leaks")
        self.etcd = etcd
        self.endpoints = etcd.endpoints
        self.etcd_data = certs.key_pair_to_secret_data(etcd.ca)
        self.kubeconfig = certs.build_kubeconfig(
            cluster_name="workload",
            server=server,
            ca_pem=(pki / "ca.crt").read_bytes(),
            client_cert_pem=(pki / "admin.crt").read_bytes(),
            client_key_pem=(pki / "admin.key").read_bytes(),
        )
        self.secrets = InMemorySecrets()
        self.registry = CollectorRegistry()
        self.tracker = Tracker(
            self.secrets,
            TrackerOptions(
                key_algorithm="ecdsa-p256",
                probe_interval=1.0,
                connecting_retry_after=0.1,
                capacity=2000,
            ),
            registry=self.registry,
        )
        self.informer = Informer(
            api_client(server, pki), CLUSTERS, namespace=namespace, name="leak-clusters"
        )
        self.informer.add_handler(self.tracker.cluster_event_handler())
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="leak-create")
        self.status_calls = 0
        self.drain = 0.0
        self.holders: list[str] = []
        self.held_at_eviction = 0
        self.entries_freed_after = 0.0

    def start(self) -> None:
        self.informer.start()
        assert self.informer.wait_for_sync(30)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.informer.stop(timeout=5)
        self.tracker.close()

    def _create(self, wave: int, index: int) -> ClusterKey:
        name = f"w{wave}-c{index}"
        obj = self.kube.create(
            groups.CLUSTER,
            self.namespace,
            {
                "apiVersion": groups.CLUSTER.api_version,
                "kind": "Cluster",
                "metadata": {"name": name, "labels": {"reliability/wave": str(wave)}},
                "spec": {"clusterNetwork": {"serviceDomain": "cluster.local"}},
            },
        )
        self.secrets.put(self.namespace, f"{name}-etcd", self.etcd_data)
        if index % 10 == 0:
            self.secrets.put(self.namespace, f"{name}-kubeconfig", {"value": self.kubeconfig})
        return ClusterKey.from_object(obj)

    def wave(self, wave: int) -> None:
        keys = list(self.pool.map(lambda i: self._create(wave, i), range(WAVE)))
        for key in keys:
            self.tracker.track(key, etcd_endpoints=self.endpoints)
        pending = set(keys)
        deadline = time.monotonic() + 60
        while pending:
            for key in list(pending):
                try:
                    access = self.tracker.etcd_access(key, self.endpoints)
                except NotConnected:
                    continue
                if int(key.name.rsplit("c", 1)[1]) % 10 == 0:
                    assert access.cluster_status().healthy
                    self.status_calls += 1
                pending.discard(key)
            assert time.monotonic() < deadline, f"wave {wave}: {len(pending)} never connected"
            time.sleep(0.02)
        self.kube.request(
            "DELETE",
            groups.CLUSTER.path(self.namespace),
            query=[("labelSelector", f"reliability/wave={wave}")],
        )
        wanted = set(keys)
        wait_for(
            f"wave {wave} to be evicted", lambda: not wanted & set(self.tracker.clusters()), 30
        )
        for key in keys:
            for suffix in ("-etcd", "-kubeconfig"):
                self.secrets.delete(self.namespace, key.name + suffix)

    def snapshot(self, channels: int = 0) -> Snapshot:
        """What the tracker holds, once the channel closes it queued have run.

        Closing a gRPC channel takes ~0.2 s on the tracker's one background closer, so
        a wave's evictions take a while to drain (minutes under load): wait until the
        pool is down to `channels`, or has not shrunk for ten seconds.
        """
        started = last_change = time.monotonic()
        seen = len(self.tracker.etcd_pool)
        while seen > channels and time.monotonic() - last_change < 10:
            time.sleep(0.2)
            now = len(self.tracker.etcd_pool)
            if now != seen:
                seen, last_change = now, time.monotonic()
            if time.monotonic() - started > 180:
                break
        self.drain = time.monotonic() - started
        self.held_at_eviction, self.entries_freed_after, self.holders = settle_entries(self.tracker)
        return Snapshot(
            entries=len(self.tracker.clusters()),
            keys=len(self.tracker._keys),
            certificates=len(self.tracker._certificates),
            channels=len(self.tracker.etcd_pool),
            threads=sorted(t.name for t in threading.enumerate()),
            series=series(self.registry, PER_CLUSTER_SERIES),
            live_entries=len(live_entries()),
            objects=len(gc.get_objects()),
            rss=rss_mib(),
        )


def live_entries() -> list[ClusterEntry]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, ClusterEntry)]


def settle_entries(tracker: Tracker, timeout: float = 15.0) -> tuple[int, float, list[str]]:
    """Wait for the entries of evicted clusters to be freed; describe what still holds them.

    A probe that was running when its cluster was evicted holds the entry until it
    returns (its API server probe may take up to ``probe_timeout``), so an entry alive
    right after the last eviction is not yet a leak; one alive ``timeout`` later is.
    """
    tracked = set(tracker.clusters())
    started = time.monotonic()
    at_start = -1
    while True:
        held = [entry for entry in live_entries() if entry.key not in tracked]
        at_start = len(held) if at_start < 0 else at_start
        if not held or time.monotonic() - started > timeout:
            break
        del held
        time.sleep(0.2)
    found = []
    for entry in held:  # not a comprehension: its frame would show up as a holder
        found.append(describe_holders(entry))
    return at_start, time.monotonic() - started, found


def describe_holders(entry: ClusterEntry) -> str:
    """Who refers to a live entry: the threads whose frames hold it, else referrer types."""
    threads = {ident: t.name for t in threading.enumerate() if (ident := t.ident) is not None}
    holders = []
    for ident, frame in sys._current_frames().items():
        walk: Any = frame
        while walk is not None:
            mine = walk.f_code in (describe_holders.__code__, settle_entries.__code__)
            if not mine and any(value is entry for value in walk.f_locals.values()):
                where = f"{walk.f_code.co_filename.rsplit('/', 1)[-1]}:{walk.f_lineno}"
                holders.append(
                    f"thread {threads.get(ident, ident)} in {walk.f_code.co_name} ({where})"
                )
            walk = walk.f_back
    if not holders:
        holders = sorted({type(r).__name__ for r in gc.get_referrers(entry)} - {"list"})
    return f"{entry.key} (evicted={entry.evicted}) held by {', '.join(holders) or 'nothing known'}"


def api_client(server: str, pki: Path) -> Any:
    """An admin client of the test control plane (its certificates are files there)."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = server
    configuration.ssl_ca_cert = str(pki / "ca.crt")
    configuration.cert_file = str(pki / "admin.crt")
    configuration.key_file = str(pki / "admin.key")
    return client.ApiClient(configuration)


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run(server: str, pki: Path, namespace: str, clusters: int, warm_up: int) -> dict[str, Any]:
    etcd_ca = certs.new_certificate_authority("leak-etcd-ca", algorithm="ecdsa-p256")
    with EtcdCluster(etcd_ca, members=1, name="leaks") as etcd:
        loop = Loop(server, pki, namespace, etcd)
        loop.start()
        try:
            started = time.monotonic()
            for wave in range(warm_up):
                loop.wave(wave)
            baseline = loop.snapshot()
            waves = clusters // WAVE
            middle = baseline.rss
            for wave in range(warm_up, waves):
                loop.wave(wave)
                if wave == (warm_up + waves) // 2:
                    middle = rss_mib()
            final = loop.snapshot(baseline.channels)
            took = time.monotonic() - started
        finally:
            stats = loop.tracker.stats()
            loop.close()
    return {
        "baseline": dataclasses.asdict(baseline),
        "final": dataclasses.asdict(final),
        "middle_rss": middle,
        "took": took,
        "drain": loop.drain,
        "held_at_eviction": loop.held_at_eviction,
        "entries_freed_after": loop.entries_freed_after,
        "status_calls": loop.status_calls,
        "keys_generated": stats.keys_generated,
        "certificates_issued": stats.certificates_issued,
        "leaks": final.leaks_against(baseline) + [f"entry {h}" for h in loop.holders],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=5)
    args = parser.parse_args()
    result = run(args.server, args.pki, args.namespace, args.clusters, args.warm_up)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
