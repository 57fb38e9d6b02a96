"""The tracker's Prometheus metrics (``kcp_tracker_*``) and the same counts as plain numbers.

Families are registered once per registry (several trackers in one process,
as in tests, share them). The default registry is ``kcp.runtime``'s process-wide
``REGISTRY`` (served on ``/metrics``), else ``prometheus_client.REGISTRY``.
``kcp_tracker_connection_up`` has one series per tracked cluster, removed
when the cluster is evicted so a deleted cluster leaves nothing behind. The
port-forward tunnels' families (``kcp_tracker_tunnels_*``) have no per-cluster
series: ``TrackerMetrics`` is the ``TunnelObserver`` of the tracker's tunnel loop.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Literal

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge

from kcp.tracker.identity import ClusterKey

__all__ = [
    "CacheName",
    "HealthResult",
    "TrackerMetrics",
    "TrackerStats",
    "default_registry",
]

CacheName = Literal["key", "certificate"]
HealthResult = Literal["success", "failure", "timeout", "unauthorized"]
ProbeTarget = Literal["api_server", "etcd"]


def default_registry() -> CollectorRegistry:
    """``kcp.runtime``'s ``REGISTRY`` when that package is there, else prometheus_client's."""
    try:
        from kcp.runtime.metrics import REGISTRY
    except ImportError:  # pragma: no cover - runtime ships with kcp
        return prometheus_client.REGISTRY
    return REGISTRY


class _Families:
    """Every ``kcp_tracker_*`` family, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.clusters = Gauge(
            "kcp_tracker_clusters", "Workload clusters currently tracked", registry=registry
        )
        self.keys_generated = Counter(
            "kcp_tracker_keys_generated_total",
            "etcd client private keys generated (one per cluster, again only after key_ttl)",
            ["algorithm"],
            registry=registry,
        )
        self.certificates_issued = Counter(
            "kcp_tracker_certificates_issued_total",
            "etcd client certificates signed by a cluster's etcd CA",
            registry=registry,
        )
        self.cache_hits = Counter(
            "kcp_tracker_cache_hits_total",
            "Tracker cache lookups answered",
            ["cache"],
            registry=registry,
        )
        self.cache_misses = Counter(
            "kcp_tracker_cache_misses_total",
            "Tracker cache lookups that found nothing usable",
            ["cache"],
            registry=registry,
        )
        self.cache_evictions = Counter(
            "kcp_tracker_cache_evictions_total",
            "Entries pushed out because a tracker cache was full (size it above the cluster "
            "count: evicting keys under load causes a key-generation storm)",
            ["cache"],
            registry=registry,
        )
        self.cache_expirations = Counter(
            "kcp_tracker_cache_expirations_total",
            "Entries dropped because their time was up (key TTL, certificate renewal)",
            ["cache"],
            registry=registry,
        )
        self.health_checks = Counter(
            "kcp_tracker_health_checks_total",
            "Health probes of workload clusters by target and result",
            ["target", "result"],
            registry=registry,
        )
        self.connection_up = Gauge(
            "kcp_tracker_connection_up",
            "1 while the tracker holds a working connection to the cluster, 0 otherwise",
            ["namespace", "name"],
            registry=registry,
        )
        self.tunnels_opened = Counter(
            "kcp_tracker_tunnels_opened_total",
            "Port-forward tunnels opened through workload API servers (kept and reused: "
            "a steady fleet opens about one per etcd member, not one per reconcile)",
            registry=registry,
        )
        self.tunnels_open = Gauge(
            "kcp_tracker_tunnels_open",
            "Port-forward tunnels open now (bounded by the tunnel loop's maximum)",
            registry=registry,
        )
        self.tunnels_max = Gauge(
            "kcp_tracker_tunnels_max",
            "Port-forward tunnels kept open at most now (follows the etcd members of the "
            "tracked clusters, up to --etcd-connections-max)",
            registry=registry,
        )
        self.etcd_connections_max = Gauge(
            "kcp_tracker_etcd_connections_max",
            "etcd connections kept open at most now (one per etcd member of the tracked "
            "clusters and an eighth more, up to --etcd-connections-max)",
            registry=registry,
        )
        self.tunnels_failed = Counter(
            "kcp_tracker_tunnels_failed_total",
            "Port-forward tunnels that could not be opened or broke, by reason (not_found: "
            "no such Pod; forbidden: RBAC; unauthorized; port: nothing listens in the Pod; "
            "unreachable, tls, timeout: the API server; lost: broke while open; rejected)",
            ["reason"],
            registry=registry,
        )


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_for(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        found = _families.get(registry)
        if found is None:
            found = _families[registry] = _Families(registry)
        return found


@dataclass(frozen=True)
class TrackerStats:
    """One tracker's counts since it started (the metrics, readable without a registry)."""

    clusters: int
    keys_generated: int
    certificates_issued: int
    cache_hits: dict[str, int]
    cache_misses: dict[str, int]
    cache_evictions: dict[str, int]
    cache_expirations: dict[str, int]
    health_checks: dict[str, int]
    """By ``target/result``, e.g. ``etcd/success``."""
    tunnels_opened: int = 0
    tunnels_open: int = 0
    tunnels_failed: dict[str, int] = field(default_factory=dict)
    """By reason, e.g. ``not_found``."""


class TrackerMetrics:
    """What the tracker records: the Prometheus families plus this tracker's own tallies."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else default_registry()
        self._f = _families_for(self.registry)
        self._lock = threading.Lock()
        self._tally: Tally[str] = Tally()
        self._clusters = 0
        self._tunnels_open = 0

    def _count(self, name: str) -> None:
        with self._lock:
            self._tally[name] += 1

    def cache_hit(self, cache: CacheName) -> None:
        self._f.cache_hits.labels(cache).inc()
        self._count(f"hit/{cache}")

    def cache_miss(self, cache: CacheName) -> None:
        self._f.cache_misses.labels(cache).inc()
        self._count(f"miss/{cache}")

    def cache_evicted(self, cache: CacheName) -> None:
        self._f.cache_evictions.labels(cache).inc()
        self._count(f"evicted/{cache}")

    def cache_expired(self, cache: CacheName) -> None:
        self._f.cache_expirations.labels(cache).inc()
        self._count(f"expired/{cache}")

    def key_generated(self, algorithm: str) -> None:
        self._f.keys_generated.labels(algorithm).inc()
        self._count("keys_generated")

    def certificate_issued(self) -> None:
        self._f.certificates_issued.inc()
        self._count("certificates_issued")

    def health_check(self, target: ProbeTarget, result: HealthResult) -> None:
        self._f.health_checks.labels(target, result).inc()
        self._count(f"health/{target}/{result}")

    def cluster_added(self, key: ClusterKey) -> None:
        self._f.clusters.inc()
        self._f.connection_up.labels(key.namespace, key.name).set(0)
        with self._lock:
            self._clusters += 1

    def cluster_removed(self, key: ClusterKey) -> None:
        self._f.clusters.dec()
        with contextlib.suppress(KeyError):
            self._f.connection_up.remove(key.namespace, key.name)
        with self._lock:
            self._clusters -= 1

    def connection(self, key: ClusterKey, up: bool) -> None:
        self._f.connection_up.labels(key.namespace, key.name).set(1 if up else 0)

    def bounds(self, etcd_connections: int, tunnels: int) -> None:
        """The bounds the tracker sized its connections and tunnels to (``kcp.tracker.sizing``)."""
        self._f.etcd_connections_max.set(etcd_connections)
        self._f.tunnels_max.set(tunnels)

    # The tunnel loop's observer (called on its thread).

    def tunnel_opened(self) -> None:
        self._f.tunnels_opened.inc()
        self._f.tunnels_open.inc()
        with self._lock:
            self._tally["tunnels_opened"] += 1
            self._tunnels_open += 1

    def tunnel_closed(self) -> None:
        self._f.tunnels_open.dec()
        with self._lock:
            self._tunnels_open -= 1

    def tunnel_failed(self, reason: str) -> None:
        self._f.tunnels_failed.labels(reason).inc()
        self._count(f"tunnel_failed/{reason}")

    def stats(self) -> TrackerStats:
        with self._lock:
            tally = dict(self._tally)
            clusters = self._clusters
            tunnels_open = self._tunnels_open

        def group(prefix: str) -> dict[str, int]:
            return {
                name[len(prefix) :]: value
                for name, value in tally.items()
                if name.startswith(prefix)
            }

        return TrackerStats(
            clusters=clusters,
            keys_generated=tally.get("keys_generated", 0),
            certificates_issued=tally.get("certificates_issued", 0),
            cache_hits=group("hit/"),
            cache_misses=group("miss/"),
            cache_evictions=group("evicted/"),
            cache_expirations=group("expired/"),
            health_checks=group("health/"),
            tunnels_opened=tally.get("tunnels_opened", 0),
            tunnels_open=tunnels_open,
            tunnels_failed=group("tunnel_failed/"),
        )
