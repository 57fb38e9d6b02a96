"""The tracker: per-cluster etcd keys, certificates, workload clients, health and eviction.

What a reconciler calls, and what it gets:

- ``etcd_access(key, endpoints) -> EtcdAccess`` and ``workload_client(key) ->
  WorkloadClient`` return at once. When the cluster is being connected (its
  Secrets read, its key generated, its first dial: all on the tracker's worker
  pool) or is marked down, they raise ``NotConnected`` with ``retry_after``; the
  reconciler requeues. ``ClusterSecretError`` (a ``NotConnected``) means a
  ``-etcd`` or ``-kubeconfig`` Secret is missing or unusable: make it a condition.
- ``health(key) -> ClusterHealth | None`` reads the probes' verdict;
  ``on_health_change(listener)`` is told when it changes.
- ``evict(key)`` forgets everything about a cluster; ``cluster_event_handler()``
  does it when a Cluster informer reports the Cluster deleted or re-created.

Locks: one tracker-wide lock guards only the entry maps (never held across I/O
or key generation); each cluster has a lock for its bookkeeping only. Threads:
one scheduler and ``probe_workers`` workers, however many clusters there are, and
one I/O thread for every port-forward tunnel (started with the first one).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cachetools import TTLCache
from prometheus_client import CollectorRegistry

from kcp.api.labels import CLUSTER_NAME_LABEL
from kcp.etcd import DIRECT, ChannelPool, EtcdTimeouts, PodEndpoint, TunnelStats, normalize_endpoint
from kcp.tracker.access import EtcdAccess
from kcp.tracker.checks import Checker
from kcp.tracker.credentials import Credentials
from kcp.tracker.entry import ClusterEntry, SecretKind, members_of
from kcp.tracker.errors import ClusterSecretError, NotConnected
from kcp.tracker.health import ClusterHealth
from kcp.tracker.identity import ClusterKey
from kcp.tracker.metrics import TrackerMetrics, TrackerStats
from kcp.tracker.options import TrackerOptions
from kcp.tracker.scheduler import ProbeScheduler
from kcp.tracker.secrets import ApiSecretReader, SecretReader
from kcp.tracker.workload import WorkloadClient

__all__ = ["Tracker"]


_SECRET_SUFFIXES = ("-etcd", "-kubeconfig")
_TOMBSTONE_TTL = 3600.0
"""Seconds an evicted cluster's key is remembered so that lookups do not re-track it."""


class Tracker:
    """Per-cluster access to workload clusters; see the module docstring for the contract.

    ``secrets`` reads the management cluster's Secrets (``ApiSecretReader`` in
    production: ``Tracker.for_api_client(api_client)``). ``registry`` receives the
    ``kcp_tracker_*`` metrics (default: ``kcp.runtime``'s ``REGISTRY``). Call
    ``close()`` when done: it stops the threads and evicts every cluster.
    """

    def __init__(
        self,
        secrets: SecretReader,
        options: TrackerOptions | None = None,
        *,
        registry: CollectorRegistry | None = None,
        etcd_pool: ChannelPool | None = None,
    ) -> None:
        self.options = options or TrackerOptions()
        opts = self.options
        self.metrics = TrackerMetrics(registry)
        self._credentials = Credentials(opts, self.metrics, etcd_pool)
        self._keys = self._credentials.keys
        self._certificates = self._credentials.certificates
        self.etcd_timeouts: EtcdTimeouts = self._credentials.timeouts
        self.etcd_pool: ChannelPool = self._credentials.pool
        self._checker = Checker(opts, secrets, self._credentials, self.metrics)
        self._entries: dict[ClusterKey, ClusterEntry] = {}
        self._by_name: dict[tuple[str, str], ClusterKey] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._members = 0
        """etcd members of the tracked clusters (one for a cluster with no endpoints known):
        what the etcd connections and tunnels are bounded by (``kcp.tracker.sizing``)."""
        # UIDs never come back: a lookup for an evicted cluster (a reconcile that raced the
        # deletion) must not start tracking it again and generate a key for nothing.
        self._tombstones: TTLCache[ClusterKey, bool] = TTLCache(
            opts.key_cache_maxsize, _TOMBSTONE_TTL
        )
        self._scheduler: ProbeScheduler[ClusterKey] = ProbeScheduler(
            self._check,
            interval=opts.probe_interval,
            workers=opts.probe_workers,
            housekeeping=self._credentials.housekeeping,
        )

    @classmethod
    def for_api_client(
        cls, api_client: Any, options: TrackerOptions | None = None, **kwargs: Any
    ) -> Tracker:
        """A tracker reading Secrets live through the management cluster's ``ApiClient``."""
        return cls(ApiSecretReader(api_client), options, **kwargs)

    # -- what the reconciler calls ---------------------------------------------------------

    def track(self, key: ClusterKey, *, etcd_endpoints: Sequence[str] = ()) -> None:
        """Start connecting ``key`` in the background (lookups do this too)."""
        entry = self._entry(key)
        if etcd_endpoints:
            self._set_endpoints(entry, etcd_endpoints)

    def etcd_access(self, key: ClusterKey, endpoints: Sequence[str]) -> EtcdAccess:
        """Access to the cluster's etcd at ``endpoints`` with a valid client certificate.

        Never waits on I/O or key generation. Raises ``NotConnected`` (requeue after
        ``retry_after``) or ``ClusterSecretError`` (the ``-etcd`` Secret is bad).
        The endpoints are remembered for the health probes.
        """
        entry = self._entry(key)
        self._set_endpoints(entry, endpoints)
        seen = entry.view()
        state, ca, error = seen.state, seen.etcd_ca, seen.etcd_error
        known, workload, kubeconfig_error = seen.endpoints, seen.workload, seen.kubeconfig_error
        tunnelled = any(PodEndpoint.parse(e) is not None for e in known)
        if error is not None:
            raise ClusterSecretError(str(error), retry_after=error.retry_after)
        if tunnelled and kubeconfig_error is not None:
            # A Pod is reached through the workload API server, with these credentials.
            raise ClusterSecretError(
                str(kubeconfig_error), retry_after=kubeconfig_error.retry_after
            )
        if state == "down":
            raise self._down(entry)
        if (
            state == "connecting"
            or ca is None
            or (tunnelled and (workload is None or workload.closed))
        ):
            self._kick(entry)
            raise self._connecting(entry)
        private_key = self._keys.get(key)
        if private_key is None:
            self._kick(entry)
            raise NotConnected(
                f"cluster {key}: a new etcd client key is being generated",
                reason="connecting",
                retry_after=self.options.connecting_retry_after,
            )
        issued = self._credentials.certificate(entry, ca, private_key)
        return EtcdAccess(
            cluster=key,
            endpoints=known,
            tls=issued.tls,
            certificate_fingerprint=issued.fingerprint,
            certificate_not_after=issued.not_after,
            timeouts=self.etcd_timeouts,
            pool=self.etcd_pool,
            dialer=workload.dialer if workload is not None else DIRECT,
            _used=entry.used_endpoints,
            _used_lock=entry.used_lock,
            _answered=entry.etcd_answered,
        )

    def workload_client(self, key: ClusterKey) -> WorkloadClient:
        """The workload cluster's API client, built from its ``-kubeconfig`` Secret.

        Never waits. Raises ``NotConnected`` or ``ClusterSecretError`` like ``etcd_access``.
        """
        entry = self._entry(key)
        seen = entry.view()
        state, error, client = seen.state, seen.kubeconfig_error, seen.workload
        if error is not None:
            raise ClusterSecretError(str(error), retry_after=error.retry_after)
        if state == "down":
            raise self._down(entry)
        if state == "connecting" or client is None or client.closed:
            self._kick(entry)
            raise self._connecting(entry)
        return client

    def health(self, key: ClusterKey) -> ClusterHealth | None:
        """The cluster's connection health, or None if it is not tracked."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        return entry.health()

    def refresh(self, key: ClusterKey) -> None:
        """Re-read the cluster's Secrets now (on a worker), e.g. after rotating its CA."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            entry.request_refresh()
            self._scheduler.schedule(key)

    def evict(self, key: ClusterKey) -> bool:
        """Forget the cluster: clients and channels closed, key and certificates dropped,
        probes stopped, its metric series removed. Returns False if it was not tracked.

        The key (with its UID) is not tracked again: later lookups raise ``NotConnected``
        with reason ``evicted``."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return False
            self._tombstones[key] = True
            if self._by_name.get(key.namespaced_name) == key:
                del self._by_name[key.namespaced_name]
        self._scheduler.unschedule(key)
        gone = entry.evict()
        self._count_members(-gone.members)
        self._credentials.forget(key, gone.endpoints, gone.generations)
        if gone.workload is not None:
            gone.workload.close()
        self.metrics.cluster_removed(key)
        entry.log.info("cluster evicted")
        return True

    def on_health_change(self, listener: Callable[[ClusterKey], None]) -> None:
        """Call ``listener(key)`` whenever a check changes what ``health(key)`` reports: the
        cluster connected or went down, or its API server or etcd started or stopped
        answering. A reconciler that re-reads health only on such events (as Cluster API's
        KCP does through its cluster cache) need not poll a healthy cluster. Called on a
        probe worker, outside every lock: it must not block."""
        self._checker.health_listeners.append(listener)

    def cluster_event_handler(self) -> Any:
        """An informer handler ``(event_type, obj, old)`` for Clusters: evicts a cluster
        when it is deleted, and the old UID when a Cluster of the same name is re-created."""

        def handle(event_type: str, obj: Mapping[str, Any], old: Any = None) -> None:
            try:
                key = ClusterKey.from_object(obj)
            except ValueError:
                return
            if event_type == "DELETED":
                self.evict(key)
                return
            with self._lock:
                current = self._by_name.get(key.namespaced_name)
            if current is not None and current != key:
                self.evict(current)

        return handle

    def secret_event_handler(self) -> Any:
        """An informer handler for Secrets (metadata is enough): when a tracked cluster's
        ``-etcd`` or ``-kubeconfig`` Secret changes, re-read it now instead of waiting
        for ``secret_refresh_interval``."""

        def handle(event_type: str, obj: Mapping[str, Any], old: Any = None) -> None:
            metadata = obj.get("metadata") or {}
            namespace = str(metadata.get("namespace") or "")
            name = str(metadata.get("name") or "")
            cluster = (metadata.get("labels") or {}).get(CLUSTER_NAME_LABEL)
            for suffix in _SECRET_SUFFIXES:
                if name.endswith(suffix) and (cluster is None or name == cluster + suffix):
                    cluster = name[: -len(suffix)]
                    break
            else:
                return
            with self._lock:
                key = self._by_name.get((namespace, cluster))
                entry = self._entries.get(key) if key is not None else None
            if key is None or entry is None:
                return
            version = str(metadata.get("resourceVersion") or "")
            kind: SecretKind = "etcd" if name.endswith("-etcd") else "kubeconfig"
            if entry.secret_event(kind, version, deleted=event_type == "DELETED"):
                self._scheduler.schedule(key)

        return handle

    def clusters(self) -> list[ClusterKey]:
        with self._lock:
            return sorted(self._entries)

    def stats(self) -> TrackerStats:
        """This tracker's counts (keys generated, certificates issued, cache and probe tallies)."""
        return self.metrics.stats()

    def tunnel_stats(self) -> TunnelStats:
        """The port-forward tunnels: open now, opened and failed so far, evicted (LRU)."""
        return self._credentials.tunnels.stats()

    def close(self) -> None:
        """Stop the scheduler and workers and evict every cluster."""
        with self._lock:
            self._closed = True
            keys = list(self._entries)
        self._scheduler.stop()
        for key in keys:
            self.evict(key)
        self._credentials.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- entries -----------------------------------------------------------------------------

    def _entry(self, key: ClusterKey) -> ClusterEntry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry
            if self._closed:
                raise NotConnected("the tracker is closed", reason="closed", retry_after=math.inf)
            if key in self._tombstones:
                raise NotConnected(
                    f"cluster {key} was deleted (evicted from the tracker); a Cluster created "
                    "again under this name has a new UID",
                    reason="evicted",
                    retry_after=self.options.probe_interval or 10.0,
                )
            previous = self._by_name.get(key.namespaced_name)
        if previous is not None and previous != key:
            # A Cluster re-created under the same name: the old one's material must go.
            self.evict(previous)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry
            entry = ClusterEntry(key)
            self._entries[key] = entry
            self._by_name[key.namespaced_name] = key
            self.metrics.cluster_added(key)
            self._members += members_of(entry.endpoints)  # none known yet
        self._count_members(0)
        entry.log.info("tracking cluster")
        self._scheduler.schedule(key)
        return entry

    def _set_endpoints(self, entry: ClusterEntry, endpoints: Iterable[str]) -> None:
        wanted = tuple(dict.fromkeys(normalize_endpoint(e) for e in endpoints))
        if not wanted:
            return
        changed = entry.set_endpoints(wanted)
        if changed is None:
            return
        change, connecting = changed
        self._count_members(change)
        if connecting:
            self._kick(entry, backing_off_too=True)

    def _count_members(self, change: int) -> None:
        """Add ``change`` to the members in use and bound connections and tunnels by them."""
        with self._lock:
            self._members += change
        self._credentials.resize(self._members_now)

    def _members_now(self) -> int:
        with self._lock:
            return self._members

    def _kick(self, entry: ClusterEntry, *, backing_off_too: bool = False) -> None:
        """Ask for a check soon, at most once per ``connecting_retry_after``, and not
        while a never-connected cluster backs off (unless ``backing_off_too``: new
        endpoints are worth a check at once)."""
        due = entry.kick(
            time.monotonic(), self.options.connecting_retry_after, backing_off_too=backing_off_too
        )
        if due and not self._scheduler.is_pending(entry.key):
            self._scheduler.schedule(entry.key)

    def _connecting(self, entry: ClusterEntry) -> NotConnected:
        seen = entry.view()
        detail = seen.last_error or seen.read_error
        suffix = f" (last problem: {detail})" if detail else ""
        return NotConnected(
            f"cluster {entry.key} is being connected{suffix}",
            reason="connecting",
            retry_after=self.options.connecting_retry_after,
        )

    def _down(self, entry: ClusterEntry) -> NotConnected:
        seen = entry.view()
        return NotConnected(
            f"cluster {entry.key} is disconnected after {seen.failures} failed health check(s): "
            f"{seen.last_error}",
            reason="down",
            retry_after=self.options.probe_interval or self.options.connecting_retry_after,
        )

    # -- the worker side -------------------------------------------------------------------

    def _check(self, key: ClusterKey) -> float | None:
        with self._lock:
            entry = self._entries.get(key)
        return self._checker.check(entry) if entry is not None else None
