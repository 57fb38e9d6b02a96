"""The tracker: per-cluster etcd keys, certificates, workload clients, health and eviction.

What a reconciler calls, and what it gets:

- ``etcd_access(key, endpoints) -> EtcdAccess`` and ``workload_client(key) ->
  WorkloadClient`` return at once. When the cluster is being connected (its
  Secrets read, its key generated, its first dial: all on the tracker's worker
  pool) or is marked down, they raise ``NotConnected`` with ``retry_after``; the
  reconciler requeues. ``ClusterSecretError`` (a ``NotConnected``) means a
  ``-etcd`` or ``-kubeconfig`` Secret is missing or unusable: make it a condition.
- ``health(key) -> ClusterHealth | None`` reads the probes' verdict.
- ``evict(key)`` forgets everything about a cluster; ``cluster_event_handler()``
  does it when a Cluster informer reports the Cluster deleted or re-created.

Locks: one tracker-wide lock guards only the entry maps (never held across I/O
or key generation); each cluster has a lock for its bookkeeping only. Threads:
one scheduler and ``probe_workers`` workers, however many clusters there are.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import structlog
from cachetools import TTLCache
from prometheus_client import CollectorRegistry

from kcp.api.labels import CLUSTER_NAME_LABEL
from kcp.etcd import ChannelPool, EtcdTimeouts, EtcdTLS, normalize_endpoint
from kcp.tracker.access import EtcdAccess
from kcp.tracker.certificates import CertificateCache, IssuedCertificate
from kcp.tracker.errors import ClusterSecretError, NotConnected
from kcp.tracker.health import (
    ClusterHealth,
    ConnectionState,
    ProbeResult,
    probe_api_server,
    probe_etcd,
)
from kcp.tracker.identity import ClusterKey
from kcp.tracker.keys import ClusterPrivateKey, KeyCache
from kcp.tracker.metrics import TrackerMetrics, TrackerStats
from kcp.tracker.options import TrackerOptions
from kcp.tracker.scheduler import ProbeScheduler
from kcp.tracker.secrets import (
    ApiSecretReader,
    EtcdCA,
    SecretData,
    SecretReader,
    WorkloadKubeconfig,
    etcd_secret_name,
    kubeconfig_secret_name,
    load_etcd_ca,
    load_kubeconfig,
)
from kcp.tracker.workload import WorkloadClient

__all__ = ["Tracker"]

_log = structlog.get_logger("kcp.tracker")

_SECRET_SUFFIXES = ("-etcd", "-kubeconfig")
_TOMBSTONE_TTL = 3600.0
"""Seconds an evicted cluster's key is remembered so that lookups do not re-track it."""
_TLS_GENERATIONS_KEPT = 2
"""Certificates whose etcd channels stay open: the current one and the one before."""


class _Entry:
    """Everything the tracker holds for one cluster except its key and certificates."""

    def __init__(self, key: ClusterKey) -> None:
        self.key = key
        self.lock = threading.Lock()
        self.log: Any = _log.bind(cluster=str(key))
        self.state: ConnectionState = "connecting"
        self.evicted = False
        self.endpoints: tuple[str, ...] = ()
        self.used_endpoints: set[str] = set()
        self.used_lock = threading.Lock()
        self.etcd_ca: EtcdCA | None = None
        self.etcd_error: ClusterSecretError | None = None
        self.etcd_seen = ""
        self.kubeconfig: WorkloadKubeconfig | None = None
        self.kubeconfig_error: ClusterSecretError | None = None
        self.kubeconfig_seen = ""
        self.workload: WorkloadClient | None = None
        self.secrets_read_at = -math.inf
        self.refresh_requested = True
        self.read_error = ""
        self.api_ok: bool | None = None
        self.etcd_ok: bool | None = None
        self.last_error = ""
        self.failures = 0
        self.last_probe_time: datetime | None = None
        self.last_kick = -math.inf
        self.etcd_answered_by = ""
        self.tls_history: list[EtcdTLS] = []


def _seen_marker(secret: SecretData | None) -> str:
    if secret is None:
        return "absent"
    return secret.resource_version or secret.digest


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
        self._secrets = secrets
        self._keys = KeyCache(
            maxsize=opts.key_cache_maxsize,
            ttl=opts.key_ttl,
            algorithm=opts.key_algorithm,
            metrics=self.metrics,
        )
        self._certificates = CertificateCache(
            maxsize=opts.certificate_cache_maxsize,
            validity=opts.certificate_validity,
            renew_fraction=opts.renew_fraction,
            common_name=opts.client_common_name,
            organizations=opts.client_organizations,
            metrics=self.metrics,
        )
        self.etcd_timeouts = EtcdTimeouts(dial=opts.etcd_dial_timeout, call=opts.etcd_call_timeout)
        self.etcd_pool = etcd_pool or ChannelPool(opts.etcd_channels, timeouts=self.etcd_timeouts)
        self._entries: dict[ClusterKey, _Entry] = {}
        self._by_name: dict[tuple[str, str], ClusterKey] = {}
        self._lock = threading.Lock()
        self._closed = False
        # UIDs never come back: a lookup for an evicted cluster (a reconcile that raced the
        # deletion) must not start tracking it again and generate a key for nothing.
        self._tombstones: TTLCache[ClusterKey, bool] = TTLCache(
            opts.key_cache_maxsize, _TOMBSTONE_TTL
        )
        # Closing a gRPC channel can block ~0.2 s (gRPC's connectivity poll): never on the
        # caller's (or an informer's) thread.
        self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kcp-tracker-close")
        self._scheduler: ProbeScheduler[ClusterKey] = ProbeScheduler(
            self._check,
            interval=opts.probe_interval,
            workers=opts.probe_workers,
            housekeeping=self._housekeeping,
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
        with entry.lock:
            state, ca, error = entry.state, entry.etcd_ca, entry.etcd_error
            known = entry.endpoints
        if error is not None:
            raise ClusterSecretError(str(error), retry_after=error.retry_after)
        if state == "down":
            raise self._down(entry)
        if state == "connecting" or ca is None:
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
        issued = self._certificate(entry, ca, private_key)
        return EtcdAccess(
            cluster=key,
            endpoints=known,
            tls=issued.tls,
            certificate_fingerprint=issued.fingerprint,
            certificate_not_after=issued.not_after,
            timeouts=self.etcd_timeouts,
            pool=self.etcd_pool,
            _used=entry.used_endpoints,
            _used_lock=entry.used_lock,
        )

    def workload_client(self, key: ClusterKey) -> WorkloadClient:
        """The workload cluster's API client, built from its ``-kubeconfig`` Secret.

        Never waits. Raises ``NotConnected`` or ``ClusterSecretError`` like ``etcd_access``.
        """
        entry = self._entry(key)
        with entry.lock:
            state, error, client = entry.state, entry.kubeconfig_error, entry.workload
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
        with entry.lock:
            secret_problems = [
                str(e) for e in (entry.etcd_error, entry.kubeconfig_error) if e is not None
            ]
            last_error = "; ".join(
                p for p in (entry.last_error, *secret_problems, entry.read_error) if p
            )
            return ClusterHealth(
                connected=entry.state == "connected",
                api_server_ok=entry.api_ok,
                etcd_ok=entry.etcd_ok,
                last_error=last_error,
                consecutive_failures=entry.failures,
                last_probe_time=entry.last_probe_time,
                state=entry.state,
            )

    def refresh(self, key: ClusterKey) -> None:
        """Re-read the cluster's Secrets now (on a worker), e.g. after rotating its CA."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            with entry.lock:
                entry.refresh_requested = True
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
        with entry.lock:
            entry.evicted = True
            workload, entry.workload = entry.workload, None
            generations, entry.tls_history = entry.tls_history, []
            endpoints = set(entry.endpoints)
        with entry.used_lock:
            endpoints |= entry.used_endpoints
        self._keys.drop(key)
        self._certificates.drop_cluster(key)
        if workload is not None:
            workload.close()
        self._discard_channels(endpoints, generations)
        self.metrics.cluster_removed(key)
        entry.log.info("cluster evicted")
        return True

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
            with entry.lock:
                seen = entry.etcd_seen if name.endswith("-etcd") else entry.kubeconfig_seen
                if event_type != "DELETED" and version and version == seen:
                    return
                entry.refresh_requested = True
            self._scheduler.schedule(key)

        return handle

    def clusters(self) -> list[ClusterKey]:
        with self._lock:
            return sorted(self._entries)

    def stats(self) -> TrackerStats:
        """This tracker's counts (keys generated, certificates issued, cache and probe tallies)."""
        return self.metrics.stats()

    def close(self) -> None:
        """Stop the scheduler and workers and evict every cluster."""
        with self._lock:
            self._closed = True
            keys = list(self._entries)
        self._scheduler.stop()
        for key in keys:
            self.evict(key)
        self._closer.shutdown(wait=True)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- entries -----------------------------------------------------------------------------

    def _entry(self, key: ClusterKey) -> _Entry:
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
            entry = _Entry(key)
            self._entries[key] = entry
            self._by_name[key.namespaced_name] = key
            self.metrics.cluster_added(key)
        entry.log.info("tracking cluster")
        self._scheduler.schedule(key)
        return entry

    def _set_endpoints(self, entry: _Entry, endpoints: Iterable[str]) -> None:
        wanted = tuple(dict.fromkeys(normalize_endpoint(e) for e in endpoints))
        if not wanted:
            return
        with entry.lock:
            if wanted == entry.endpoints:
                return
            entry.endpoints = wanted
            connecting = entry.state == "connecting"
        if connecting:
            self._kick(entry)

    def _kick(self, entry: _Entry) -> None:
        """Ask for a check soon, at most once per ``connecting_retry_after``."""
        now = time.monotonic()
        with entry.lock:
            if now - entry.last_kick < self.options.connecting_retry_after:
                return
            entry.last_kick = now
        if not self._scheduler.is_pending(entry.key):
            self._scheduler.schedule(entry.key)

    def _connecting(self, entry: _Entry) -> NotConnected:
        with entry.lock:
            detail = entry.last_error or entry.read_error
        suffix = f" (last problem: {detail})" if detail else ""
        return NotConnected(
            f"cluster {entry.key} is being connected{suffix}",
            reason="connecting",
            retry_after=self.options.connecting_retry_after,
        )

    def _down(self, entry: _Entry) -> NotConnected:
        with entry.lock:
            detail, failures = entry.last_error, entry.failures
        return NotConnected(
            f"cluster {entry.key} is disconnected after {failures} failed health check(s): "
            f"{detail}",
            reason="down",
            retry_after=self.options.probe_interval or self.options.connecting_retry_after,
        )

    # -- certificates and channels -----------------------------------------------------------

    def _certificate(
        self, entry: _Entry, ca: EtcdCA, private_key: ClusterPrivateKey
    ) -> IssuedCertificate:
        found = self._certificates.get(entry.key, ca, private_key)
        if found is not None:
            return found
        issued = self._certificates.issue(entry.key, ca, private_key)
        retired: list[EtcdTLS] = []
        with entry.lock:
            evicted = entry.evicted
            if not evicted:
                entry.tls_history.append(issued.tls)
                while len(entry.tls_history) > _TLS_GENERATIONS_KEPT:
                    retired.append(entry.tls_history.pop(0))
                endpoints = set(entry.endpoints)
        if evicted:
            self._certificates.drop_cluster(entry.key)
            return issued
        entry.log.info(
            "etcd client certificate issued",
            fingerprint=issued.fingerprint[:16],
            not_after=issued.not_after.isoformat(),
            ca=ca.fingerprint[:16],
        )
        if retired:
            with entry.used_lock:
                endpoints |= entry.used_endpoints
            self._discard_channels(endpoints, retired)
        return issued

    def _discard_channels(self, endpoints: Iterable[str], generations: Iterable[EtcdTLS]) -> None:
        """Close the etcd channels of these certificates, in the background."""
        endpoint_list = list(endpoints)
        targets = [(endpoint, tls) for tls in generations for endpoint in endpoint_list]
        if not targets:
            return

        def close() -> None:
            for endpoint, tls in targets:
                self.etcd_pool.discard(endpoint, tls)

        try:
            self._closer.submit(close)
        except RuntimeError:  # closed: do it here
            close()

    # -- the check (on a worker) -------------------------------------------------------------

    def _check(self, key: ClusterKey) -> None:
        """Connect or probe one cluster: refresh its Secrets when due, make sure it has a key
        and clients, probe its API server and etcd, and record the verdict."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.evicted:
            return
        self._refresh_secrets(entry)
        with entry.lock:
            ca = entry.etcd_ca
        private_key = self._ensure_key(entry) if ca is not None else None
        if entry.evicted:
            return
        workload = self._ensure_workload(entry)
        timeout = self.options.probe_timeout
        api = probe_api_server(workload, timeout) if workload is not None else None
        etcd: ProbeResult | None = None
        with entry.lock:
            endpoints, prefer = entry.endpoints, entry.etcd_answered_by
        if ca is not None and private_key is not None and endpoints:
            try:
                issued = self._certificate(entry, ca, private_key)
            except ClusterSecretError as exc:
                with entry.lock:
                    entry.etcd_error = exc
            else:
                etcd = probe_etcd(endpoints, issued.tls, self.etcd_pool, timeout, prefer=prefer)
        self._record(entry, api, etcd)

    def _read(self, entry: _Entry, name: str) -> tuple[bool, SecretData | None]:
        try:
            return True, self._secrets.read(
                entry.key.namespace, name, timeout=self.options.secret_read_timeout
            )
        except Exception as exc:
            message = f"reading Secret {entry.key.namespace}/{name} failed: {exc}"
            with entry.lock:
                entry.read_error = message
                entry.refresh_requested = True
            entry.log.warning("secret read failed", secret=name, error=str(exc))
            return False, None

    def _refresh_secrets(self, entry: _Entry) -> None:
        now = time.monotonic()
        with entry.lock:
            due = entry.refresh_requested or (
                now - entry.secrets_read_at >= self.options.secret_refresh_interval
            )
            if not due:
                return
            entry.refresh_requested = False
            entry.secrets_read_at = now
            entry.read_error = ""
        retry_after = self.options.connecting_retry_after * 10
        ok, etcd_secret = self._read(entry, etcd_secret_name(entry.key))
        if ok:
            marker = _seen_marker(etcd_secret)
            with entry.lock:
                changed = marker != entry.etcd_seen
            if changed:
                ca: EtcdCA | None = None
                error: ClusterSecretError | None = None
                try:
                    ca = load_etcd_ca(entry.key, etcd_secret, retry_after=retry_after)
                except ClusterSecretError as exc:
                    error = exc
                with entry.lock:
                    previous = entry.etcd_ca
                    entry.etcd_seen, entry.etcd_ca, entry.etcd_error = marker, ca, error
                if error is not None:
                    entry.log.warning("etcd CA Secret unusable", error=str(error))
                elif (
                    previous is not None
                    and ca is not None
                    and previous.fingerprint != ca.fingerprint
                ):
                    entry.log.info(
                        "etcd CA changed; client certificates will be re-issued",
                        ca=ca.fingerprint[:16],
                    )
        ok, kubeconfig_secret = self._read(entry, kubeconfig_secret_name(entry.key))
        if ok:
            marker = _seen_marker(kubeconfig_secret)
            with entry.lock:
                changed = marker != entry.kubeconfig_seen
            if changed:
                kubeconfig: WorkloadKubeconfig | None = None
                kc_error: ClusterSecretError | None = None
                try:
                    kubeconfig = load_kubeconfig(
                        entry.key, kubeconfig_secret, retry_after=retry_after
                    )
                except ClusterSecretError as exc:
                    kc_error = exc
                with entry.lock:
                    entry.kubeconfig_seen = marker
                    entry.kubeconfig, entry.kubeconfig_error = kubeconfig, kc_error
                if kubeconfig_secret is None:
                    entry.log.info("no kubeconfig Secret (yet)", error=str(kc_error))
                elif kc_error is not None:
                    entry.log.warning("kubeconfig Secret unusable", error=str(kc_error))

    def _ensure_key(self, entry: _Entry) -> ClusterPrivateKey | None:
        found = self._keys.peek(entry.key)
        if found is not None:
            return found
        fresh = self._keys.generate()
        with entry.lock:
            if entry.evicted:
                return None
            self._keys.store(entry.key, fresh)
        entry.log.info("etcd client key generated", algorithm=fresh.algorithm)
        return fresh

    def _ensure_workload(self, entry: _Entry) -> WorkloadClient | None:
        with entry.lock:
            kubeconfig, current = entry.kubeconfig, entry.workload
        if kubeconfig is None:
            if current is not None:
                with entry.lock:
                    if entry.workload is current:
                        entry.workload = None
                current.close()
            return None
        if current is not None and current.digest == kubeconfig.digest and not current.closed:
            return current
        try:
            fresh = WorkloadClient(
                kubeconfig.kubeconfig, digest=kubeconfig.digest, timeout=self.options.api_timeout
            )
        except (ssl.SSLError, ValueError) as exc:
            error = ClusterSecretError(
                f"Secret {entry.key.namespace}/{kubeconfig_secret_name(entry.key)}: its "
                f"credentials cannot be used for TLS ({exc}); put a matching client "
                "certificate and key and the cluster CA in the kubeconfig",
                retry_after=self.options.connecting_retry_after * 10,
            )
            with entry.lock:
                entry.kubeconfig_error = error
            return None
        replaced: WorkloadClient | None
        with entry.lock:
            if entry.evicted:
                replaced = fresh
            else:
                replaced, entry.workload = entry.workload, fresh
        if replaced is not None:
            replaced.close()
        if replaced is fresh:
            return None
        if current is not None:
            entry.log.info("workload API client rebuilt from a changed kubeconfig Secret")
        return fresh

    def _record(self, entry: _Entry, api: ProbeResult | None, etcd: ProbeResult | None) -> None:
        results = [r for r in (api, etcd) if r is not None]
        for result in results:
            self.metrics.health_check(result.target, result.result)
        with entry.lock:
            if entry.evicted:
                return
            previous = entry.state
            if results:
                entry.last_probe_time = datetime.now(UTC)
            if api is not None:
                entry.api_ok = api.ok
            if etcd is not None:
                entry.etcd_ok = etcd.ok
                if etcd.ok:
                    entry.etcd_answered_by = etcd.answered_by
            problems = [r.error for r in results if not r.ok]
            if not results:
                pass  # nothing to probe yet (Secrets missing or unreadable, no endpoints)
            elif any(r.result == "unauthorized" for r in results):
                entry.failures += 1
                entry.last_error = "; ".join(problems)
                entry.state = "down"
            elif not problems:
                entry.failures = 0
                entry.last_error = ""
                entry.state = "connected"
            else:
                entry.failures += 1
                entry.last_error = "; ".join(problems)
                if entry.failures >= self.options.failure_threshold:
                    entry.state = "down"
            state = entry.state
            dropped: WorkloadClient | None = None
            generations: list[EtcdTLS] = []
            if state == "down" and previous != "down":
                dropped, entry.workload = entry.workload, None
                generations = list(entry.tls_history)
                entry.refresh_requested = True
            endpoints = set(entry.endpoints)
            if state != previous:
                # Under the entry lock, so an eviction (which removes the series after
                # marking the entry evicted) cannot be overtaken by this update.
                self.metrics.connection(entry.key, state == "connected")
        if state == previous:
            return
        if state == "connected":
            entry.log.info("cluster connected")
        elif state == "down":
            entry.log.warning(
                "cluster disconnected; dropping its clients, keeping its key",
                failures=entry.failures,
                error=entry.last_error,
            )
            if dropped is not None:
                dropped.close()
            with entry.used_lock:
                endpoints |= entry.used_endpoints
            self._discard_channels(endpoints, generations)

    def _housekeeping(self) -> None:
        self._keys.expire()
        self._certificates.expire()
