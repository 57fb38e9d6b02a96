"""One etcd client private key per cluster, generated once and kept in a TTL cache.

Generating an RSA-2048 key costs ~30 ms of CPU (with a long tail); signing a
certificate for an existing key ~0.25 ms. Cluster API once generated keys on
every reconcile and burned a core at a few dozen clusters; here a key is made
when a cluster is first connected (on a worker thread, never a caller's) and
again only after ``key_ttl`` or eviction. The cache is bounded well above the
cluster capacity; a capacity eviction is counted because it means the bound
is too low and keys are being regenerated under load.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kcp.certs import KeyAlgorithm, PrivateKey, generate_private_key
from kcp.tracker.caches import CountingTTLCache, DropReason
from kcp.tracker.identity import ClusterKey
from kcp.tracker.metrics import TrackerMetrics

__all__ = ["ClusterPrivateKey", "KeyCache"]

_serials = itertools.count(1)
"""Process-wide, so a serial never names two different keys."""


@dataclass(frozen=True, eq=False)
class ClusterPrivateKey:
    """A cluster's etcd client key; ``serial`` tells generations apart (certificates use it).

    The repr never shows the key.
    """

    private_key: PrivateKey = field(repr=False)
    algorithm: KeyAlgorithm
    serial: int


class KeyCache:
    """Thread-safe; the lock covers cache bookkeeping only, never key generation."""

    def __init__(
        self,
        *,
        maxsize: int,
        ttl: float | None,
        algorithm: KeyAlgorithm,
        metrics: TrackerMetrics,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.algorithm: KeyAlgorithm = algorithm
        self._metrics = metrics
        self._lock = threading.Lock()
        self._cache: CountingTTLCache[ClusterKey, ClusterPrivateKey] = CountingTTLCache(
            maxsize, math.inf if ttl is None else ttl, self._dropped, timer
        )

    def _dropped(self, reason: DropReason) -> None:
        if reason == "capacity":
            self._metrics.cache_evicted("key")
        else:
            self._metrics.cache_expired("key")

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def get(self, key: ClusterKey) -> ClusterPrivateKey | None:
        """The cluster's key if cached (counted as a cache hit or miss)."""
        found = self.peek(key)
        if found is None:
            self._metrics.cache_miss("key")
        else:
            self._metrics.cache_hit("key")
        return found

    def peek(self, key: ClusterKey) -> ClusterPrivateKey | None:
        """The cluster's key if cached, without counting a lookup."""
        with self._lock:
            return self._cache.get(key)

    def generate(self) -> ClusterPrivateKey:
        """A fresh key (CPU-heavy for RSA: call it on a worker thread, then ``store`` it)."""
        private_key = generate_private_key(self.algorithm)
        self._metrics.key_generated(self.algorithm)
        return ClusterPrivateKey(private_key, self.algorithm, next(_serials))

    def store(self, key: ClusterKey, value: ClusterPrivateKey) -> None:
        with self._lock:
            self._cache[key] = value

    def drop(self, key: ClusterKey) -> bool:
        """Forget the cluster's key; True if one was cached."""
        with self._lock:
            self._cache.expire()
            return self._cache.pop(key, None) is not None

    def expire(self) -> None:
        """Drop (and count) keys whose TTL is up; called periodically by the tracker."""
        with self._lock:
            self._cache.expire()
