"""The expensive part of reaching a cluster's etcd: its key, its certificates, its channels.

Keys and certificates are cached per cluster (see ``keys`` and ``certificates``);
channels live in a bounded ``ChannelPool`` shared by all clusters, and the
port-forward tunnels under them on one ``TunnelLoop`` (one thread, started with
the first tunnel; bounded too). Both bounds follow the members of the clusters
tracked (``resize``, ``kcp.tracker.sizing``) unless the options pin them. Each cluster's
entry remembers the certificates it handed out, so that their channels can be
closed when a certificate is superseded twice over, the cluster goes down, or it
is evicted. Closing a gRPC channel can block ~0.2 s (gRPC's connectivity poll),
so that happens on a background thread, never on a caller's or an informer's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from kcp.etcd import ChannelPool, EtcdTimeouts, EtcdTLS, TunnelLoop
from kcp.tracker.certificates import CertificateCache, IssuedCertificate
from kcp.tracker.entry import ClusterEntry
from kcp.tracker.identity import ClusterKey
from kcp.tracker.keys import ClusterPrivateKey, KeyCache
from kcp.tracker.metrics import TrackerMetrics
from kcp.tracker.options import TrackerOptions
from kcp.tracker.secrets import EtcdCA
from kcp.tracker.sizing import connection_bounds, open_files_limit

__all__ = ["Credentials"]


class Credentials:
    """Keys, certificates and etcd channels of every tracked cluster; thread-safe."""

    def __init__(
        self, options: TrackerOptions, metrics: TrackerMetrics, pool: ChannelPool | None = None
    ) -> None:
        self.keys = KeyCache(
            maxsize=options.key_cache_maxsize,
            ttl=options.key_ttl,
            algorithm=options.key_algorithm,
            metrics=metrics,
        )
        self.certificates = CertificateCache(
            maxsize=options.certificate_cache_maxsize,
            validity=options.certificate_validity,
            renew_fraction=options.renew_fraction,
            common_name=options.client_common_name,
            organizations=options.client_organizations,
            metrics=metrics,
        )
        self.timeouts = EtcdTimeouts(dial=options.etcd_dial_timeout, call=options.etcd_call_timeout)
        self._options = options
        self._metrics = metrics
        self._open_files = open_files_limit()
        self._sizing_lock = threading.Lock()
        bounds = connection_bounds(0, options, open_files=self._open_files)
        self._own_pool = pool is None
        self.pool = pool or ChannelPool(
            bounds.channels, timeouts=self.timeouts, transport=options.etcd_transport
        )
        self.tunnels = TunnelLoop(
            max_tunnels=bounds.tunnels,
            keepalive=options.tunnel_keepalive,
            keepalive_timeout=options.probe_timeout,
            observer=metrics,
        )
        metrics.bounds(self.pool.max_size, bounds.tunnels)
        self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kcp-tracker-close")

    def resize(self, members: Callable[[], int]) -> None:
        """Bound the pool (unless it was handed in) and the tunnels for the ``members()`` etcd
        members in use; called whenever the tracker's clusters or their endpoints change
        (``members`` is read under this method's lock, so the last change is what holds)."""
        with self._sizing_lock:
            bounds = connection_bounds(members(), self._options, open_files=self._open_files)
            if self._own_pool:
                self.pool.resize(bounds.channels)
            self.tunnels.resize(bounds.tunnels)
            self._metrics.bounds(self.pool.max_size, bounds.tunnels)

    def ensure_key(self, entry: ClusterEntry) -> ClusterPrivateKey | None:
        """The cluster's key, generated here if it has none (CPU-heavy: workers only).

        None if the cluster was evicted meanwhile (the fresh key is then dropped).
        """
        found = self.keys.peek(entry.key)
        if found is not None:
            return found
        fresh = self.keys.generate()
        if not entry.unless_evicted(lambda: self.keys.store(entry.key, fresh)):
            return None
        entry.log.info("etcd client key generated", algorithm=fresh.algorithm)
        return fresh

    def certificate(
        self, entry: ClusterEntry, ca: EtcdCA, private_key: ClusterPrivateKey
    ) -> IssuedCertificate:
        """The cached certificate for this CA and key, or a freshly signed one (~0.25 ms).

        Raises ``ClusterSecretError`` when the CA cannot sign.
        """
        found = self.certificates.get(entry.key, ca, private_key)
        if found is not None:
            return found
        issued = self.certificates.issue(entry.key, ca, private_key)
        superseded = entry.remember_tls(issued.tls)
        if superseded is None:  # evicted meanwhile
            self.certificates.drop_cluster(entry.key)
            return issued
        entry.log.info(
            "etcd client certificate issued",
            fingerprint=issued.fingerprint[:16],
            not_after=issued.not_after.isoformat(),
            ca=ca.fingerprint[:16],
        )
        retired, endpoints = superseded
        if retired:
            self.discard_channels(endpoints, retired)
        return issued

    def discard_channels(self, endpoints: Iterable[str], generations: Iterable[EtcdTLS]) -> None:
        """Close the etcd channels of these certificates to these endpoints, in the background."""
        endpoint_list = list(endpoints)
        targets = [(endpoint, tls) for tls in generations for endpoint in endpoint_list]
        if not targets:
            return

        def close() -> None:
            for endpoint, tls in targets:
                self.pool.discard(endpoint, tls)

        try:
            self._closer.submit(close)
        except RuntimeError:  # shut down: do it here
            close()

    def discard_route(self, route: str) -> None:
        """Close, in the background, the channels reached by ``route`` (a retired API server
        client's port-forwards: they would otherwise linger until the LRU drops them)."""
        try:
            self._closer.submit(self.pool.close_route, route)
        except RuntimeError:  # shut down: do it here
            self.pool.close_route(route)

    def forget(
        self, key: ClusterKey, endpoints: Iterable[str], generations: Iterable[EtcdTLS]
    ) -> None:
        """Drop the cluster's key and certificates and close its channels."""
        self.keys.drop(key)
        self.certificates.drop_cluster(key)
        self.discard_channels(endpoints, generations)

    def housekeeping(self) -> None:
        """Drop (and count) expired keys and certificates."""
        self.keys.expire()
        self.certificates.expire()

    def close(self) -> None:
        """Wait for pending channel closes; close every tunnel."""
        self._closer.shutdown(wait=True)
        self.tunnels.close()
