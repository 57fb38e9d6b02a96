"""Short-lived etcd client certificates, signed by each cluster's etcd CA and cached.

A certificate is cached until ``renew_fraction`` (two thirds) of its life has
passed and is never handed out after that, so a caller always gets one with at
least a third of its life left. The cache key holds the CA's fingerprint and the
key's serial: a rotated CA or a new key simply misses and gets a fresh
certificate; the stale one ages out. Issuing reuses the cluster's cached key, so
it costs a signature (~0.25 ms), not a key generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kcp.certs import CertificateError, KeyPair, Usage, issue_certificate
from kcp.etcd import EtcdTLS
from kcp.tracker.caches import CountingTLRUCache, DropReason
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.identity import ClusterKey
from kcp.tracker.keys import ClusterPrivateKey
from kcp.tracker.metrics import TrackerMetrics
from kcp.tracker.secrets import EtcdCA, etcd_secret_ref

__all__ = ["CertificateCache", "IssuedCertificate"]

_CLIENT_USAGE: tuple[Usage, ...] = ("client",)

CertKey = tuple[ClusterKey, str, int]
"""(cluster, CA fingerprint, key serial)."""


@dataclass(frozen=True, eq=False)
class IssuedCertificate:
    """A client certificate with the TLS material to present it; the repr shows no key."""

    pair: KeyPair = field(repr=False)
    tls: EtcdTLS = field(repr=False)
    ca_fingerprint: str
    issued_at: datetime
    renew_at: datetime
    """When it stops being handed out (``renew_fraction`` of its life)."""
    renew_at_monotonic: float

    @property
    def fingerprint(self) -> str:
        return self.pair.fingerprint

    @property
    def not_after(self) -> datetime:
        return self.pair.not_after


def _renewal_deadline(key: CertKey, value: IssuedCertificate, now: float) -> float:
    return value.renew_at_monotonic


class CertificateCache:
    """Thread-safe; the lock covers cache bookkeeping only, never signing."""

    def __init__(
        self,
        *,
        maxsize: int,
        validity: timedelta,
        renew_fraction: float,
        common_name: str,
        organizations: Sequence[str],
        metrics: TrackerMetrics,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.validity = validity
        self.renew_fraction = renew_fraction
        self.common_name = common_name
        self.organizations = tuple(organizations)
        self._metrics = metrics
        self._timer = timer
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: CountingTLRUCache[CertKey, IssuedCertificate] = CountingTLRUCache(
            maxsize, _renewal_deadline, self._dropped, timer
        )

    def _dropped(self, reason: DropReason) -> None:
        if reason == "capacity":
            self._metrics.cache_evicted("certificate")
        else:
            self._metrics.cache_expired("certificate")

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def get(
        self, cluster: ClusterKey, ca: EtcdCA, key: ClusterPrivateKey
    ) -> IssuedCertificate | None:
        """The cached certificate for this CA and key, if still before its renewal time."""
        cache_key = (cluster, ca.fingerprint, key.serial)
        with self._lock:
            found = self._cache.get(cache_key)
            if found is not None and self._clock() >= found.renew_at:
                # The wall clock says it is due even if the monotonic deadline is not.
                self._cache.pop(cache_key, None)
                found = None
        if found is None:
            self._metrics.cache_miss("certificate")
        else:
            self._metrics.cache_hit("certificate")
        return found

    def issue(self, cluster: ClusterKey, ca: EtcdCA, key: ClusterPrivateKey) -> IssuedCertificate:
        """Sign a fresh certificate for the cluster's key with its CA, and cache it.

        Raises ``ClusterSecretError`` when the CA cannot sign (e.g. it expired).
        """
        now = self._clock()
        monotonic_now = self._timer()
        try:
            pair = issue_certificate(
                ca.signer,
                common_name=self.common_name,
                organizations=self.organizations,
                usages=_CLIENT_USAGE,
                validity=self.validity,
                private_key=key.private_key,
                now=now,
            )
        except CertificateError as exc:
            raise ClusterSecretError(
                f"cannot issue an etcd client certificate for cluster {cluster}: {exc}",
                retry_after=60.0,
            ) from None
        self._metrics.certificate_issued()
        life = max(pair.not_after - now, timedelta(0))
        renew_in = life * self.renew_fraction
        issued = IssuedCertificate(
            pair=pair,
            tls=EtcdTLS(
                ca_pem=ca.trust_pem,
                cert_pem=pair.cert_pem,
                key_pem=pair.key_pem,
                ca_source=f"Secret {etcd_secret_ref(cluster)}",
            ),
            ca_fingerprint=ca.fingerprint,
            issued_at=now,
            renew_at=now + renew_in,
            renew_at_monotonic=monotonic_now + renew_in.total_seconds(),
        )
        with self._lock:
            self._cache[(cluster, ca.fingerprint, key.serial)] = issued
        return issued

    def drop_cluster(self, cluster: ClusterKey) -> int:
        """Forget every certificate of the cluster; returns how many."""
        with self._lock:
            self._cache.expire()
            keys = [k for k in self._cache if k[0] == cluster]
            for k in keys:
                self._cache.pop(k, None)
        return len(keys)

    def expire(self) -> None:
        """Drop (and count) certificates past their renewal time."""
        with self._lock:
            self._cache.expire()
