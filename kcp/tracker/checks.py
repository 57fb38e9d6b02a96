"""What a worker does for one cluster: connect it, or check that it is still there.

A check re-reads the cluster's ``-etcd`` and ``-kubeconfig`` Secrets when they
are due (or an event said they changed), makes sure the cluster has a key and a
workload client, probes its API server (and its etcd, at most every
``etcd_probe_interval`` while all is well), and records the verdict:
``connected`` once every probe made succeeds; ``down`` after
``failure_threshold`` failed checks in a row of a cluster that has connected
before, or at once on a 401. A cluster that never connected stays
``connecting`` however often it fails (its load balancer may have no backends
yet) and is checked again after a growing ``connecting_backoff``. Going down
drops the cluster's clients and channels but keeps its key and certificate.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from kcp.etcd import DIRECT, PortForwardDialer
from kcp.tracker.credentials import Credentials
from kcp.tracker.entry import ClusterEntry, SecretKind, seen_marker
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.health import ProbeResult, probe_api_server, probe_etcd
from kcp.tracker.identity import ClusterKey
from kcp.tracker.metrics import TrackerMetrics
from kcp.tracker.options import TrackerOptions
from kcp.tracker.recent import RecentReads
from kcp.tracker.secrets import (
    SecretData,
    SecretReader,
    etcd_secret_name,
    kubeconfig_secret_name,
    kubeconfig_secret_ref,
    load_etcd_ca,
    load_kubeconfig,
)
from kcp.tracker.workload import WorkloadClient

__all__ = ["Checker"]

T = TypeVar("T")

_SECRET_NAMES: dict[SecretKind, Callable[[ClusterKey], str]] = {
    "etcd": etcd_secret_name,
    "kubeconfig": kubeconfig_secret_name,
}


def _attempt(load: Callable[[], T]) -> tuple[T | None, ClusterSecretError | None]:
    """``load()``'s result, or the ``ClusterSecretError`` that says what to fix."""
    try:
        return load(), None
    except ClusterSecretError as exc:
        return None, exc


class Checker:
    """Runs on the tracker's workers; changes an entry only through its methods (each brief,
    under the entry's lock), never across I/O."""

    def __init__(
        self,
        options: TrackerOptions,
        secrets: SecretReader,
        credentials: Credentials,
        metrics: TrackerMetrics,
    ) -> None:
        self.options = options
        self._secrets = secrets
        self._credentials = credentials
        self.metrics = metrics
        self.recent = RecentReads()
        """Recent workload reads of every cluster, shared by its reconciles."""
        self.health_listeners: list[Callable[[ClusterKey], None]] = []
        """Called with a cluster's key, on a worker, when a check changed its health."""

    def check(self, entry: ClusterEntry) -> float | None:
        """Connect or probe one cluster (see the module docstring).

        Returns the seconds until the next check while a never-connected cluster backs
        off, else None (the regular ``probe_interval``)."""
        if entry.evicted:
            return None
        self.refresh_secrets(entry)
        ca = entry.view().etcd_ca
        private_key = self._credentials.ensure_key(entry) if ca is not None else None
        if entry.evicted:
            return None
        workload = self.ensure_workload(entry)
        timeout = self.options.probe_timeout
        api = None
        if workload is not None and entry.api_due(self.options.probe_interval):
            source = f"Secret {kubeconfig_secret_ref(entry.key)}"
            api = probe_api_server(workload, timeout, kubeconfig_source=source)
        etcd: ProbeResult | None = None
        seen = entry.view()
        endpoints, prefer = seen.endpoints, seen.etcd_answered_by
        if (
            ca is not None
            and private_key is not None
            and endpoints
            and entry.etcd_due(self.options.etcd_probe_interval)
        ):
            try:
                issued = self._credentials.certificate(entry, ca, private_key)
            except ClusterSecretError as exc:
                entry.etcd_unusable(exc)
            else:
                if entry.evicted:  # while the API server probe ran: open nothing for it
                    return None
                etcd = probe_etcd(
                    endpoints,
                    issued.tls,
                    self._credentials.pool,
                    timeout,
                    prefer=prefer,
                    dialer=workload.dialer if workload is not None else DIRECT,
                )
                if entry.evicted:
                    # Evicted during the probe: eviction closed the channels it knew of,
                    # perhaps before the probe opened this one.
                    self._credentials.discard_channels(endpoints, [issued.tls])
        return self.record(entry, api, etcd)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after a never-connected cluster's ``failures``-th failed check."""
        delay = self.options.connecting_backoff * 2.0 ** min(max(failures - 1, 0), 30)
        return min(delay, self.options.connecting_backoff_max)

    def _read(self, entry: ClusterEntry, name: str) -> tuple[bool, SecretData | None]:
        try:
            return True, self._secrets.read(
                entry.key.namespace, name, timeout=self.options.secret_read_timeout
            )
        except Exception as exc:
            entry.secret_read_failed(f"reading Secret {entry.key.namespace}/{name} failed: {exc}")
            entry.log.warning("secret read failed", secret=name, error=str(exc))
            return False, None

    def refresh_secrets(self, entry: ClusterEntry) -> None:
        """Re-read the ``-etcd`` and ``-kubeconfig`` Secrets when due; keep what changed."""
        if not entry.refresh_due(time.monotonic(), self.options.secret_refresh_interval):
            return
        retry_after = self.options.connecting_retry_after * 10
        changed = self._read_changed(entry, "etcd")
        if changed is not None:
            marker, secret = changed
            ca, error = _attempt(lambda: load_etcd_ca(entry.key, secret, retry_after=retry_after))
            previous = entry.etcd_secret_loaded(marker, ca, error)
            if error is not None:
                entry.log.warning("etcd CA Secret unusable", error=str(error))
            elif previous is not None and ca is not None and previous.fingerprint != ca.fingerprint:
                entry.log.info(
                    "etcd CA changed; client certificates will be re-issued",
                    ca=ca.fingerprint[:16],
                )
        changed = self._read_changed(entry, "kubeconfig")
        if changed is not None:
            marker, secret = changed
            kubeconfig, kc_error = _attempt(
                lambda: load_kubeconfig(entry.key, secret, retry_after=retry_after)
            )
            entry.kubeconfig_secret_loaded(marker, kubeconfig, kc_error)
            if secret is None:
                entry.log.info("no kubeconfig Secret (yet)", error=str(kc_error))
            elif kc_error is not None:
                entry.log.warning("kubeconfig Secret unusable", error=str(kc_error))

    def _read_changed(
        self, entry: ClusterEntry, kind: SecretKind
    ) -> tuple[str, SecretData | None] | None:
        """The Secret of this kind (None: absent) and its marker, if it was read and has
        changed since the last read; else None."""
        ok, secret = self._read(entry, _SECRET_NAMES[kind](entry.key))
        if not ok:
            return None
        marker = seen_marker(secret)
        return (marker, secret) if entry.secret_changed(kind, marker) else None

    def ensure_workload(self, entry: ClusterEntry) -> WorkloadClient | None:
        seen = entry.view()
        kubeconfig, current = seen.kubeconfig, seen.workload
        if kubeconfig is None:
            if current is not None:
                entry.drop_workload(current)
                self.retire(current)
            return None
        if current is not None and current.digest == kubeconfig.digest and not current.closed:
            return current
        try:
            fresh = WorkloadClient(
                kubeconfig.kubeconfig,
                digest=kubeconfig.digest,
                timeout=self.options.api_timeout,
                tunnels=self._credentials.tunnels,
                source=f"Secret {kubeconfig_secret_ref(entry.key)}",
                on_answer=entry.api_answered,
                recent=self.recent,
            )
        except (ssl.SSLError, ValueError) as exc:
            error = ClusterSecretError(
                f"Secret {kubeconfig_secret_ref(entry.key)}: its "
                f"credentials cannot be used for TLS ({exc}); put a matching client "
                "certificate and key and the cluster CA in the kubeconfig",
                retry_after=self.options.connecting_retry_after * 10,
            )
            entry.kubeconfig_unusable(error)
            return None
        replaced = entry.install_workload(fresh)
        if replaced is not None:
            self.retire(replaced)
        if replaced is fresh:
            return None
        if current is not None:
            entry.log.info("workload API client rebuilt from a changed kubeconfig Secret")
        return fresh

    def retire(self, client: WorkloadClient) -> None:
        """Close a workload client that is no longer the cluster's, with its tunnels and the
        etcd connections over them."""
        client.close()
        if isinstance(client.dialer, PortForwardDialer):
            self._credentials.discard_route(client.dialer.pod_route)

    def _tell(self, entry: ClusterEntry) -> None:
        for listener in self.health_listeners:
            try:
                listener(entry.key)
            except Exception:
                entry.log.exception("health listener failed")

    def record(
        self, entry: ClusterEntry, api: ProbeResult | None, etcd: ProbeResult | None
    ) -> float | None:
        """Apply one check's results; returns the backoff delay as ``check`` does."""
        for result in (api, etcd):
            if result is not None:
                self.metrics.health_check(result.target, result.result)
        verdict = entry.record(
            api,
            etcd,
            failure_threshold=self.options.failure_threshold,
            backoff=self.backoff,
            on_change=lambda connected: self.metrics.connection(entry.key, connected),
        )
        if verdict is None:
            return None
        if verdict.health_changed:
            self._tell(entry)
        if verdict.state == verdict.previous:
            if verdict.delay is not None:
                entry.log.debug(
                    "cluster not reachable yet; backing off",
                    failures=verdict.failures,
                    retry_in=round(verdict.delay, 1),
                    error=verdict.last_error,
                )
            return verdict.delay
        if verdict.state == "connected":
            entry.log.info("cluster connected")
        elif verdict.state == "down":
            entry.log.warning(
                "cluster disconnected; dropping its clients, keeping its key",
                failures=verdict.failures,
                error=verdict.last_error,
            )
            if verdict.dropped is not None:
                self.retire(verdict.dropped)
            self._credentials.discard_channels(verdict.endpoints, verdict.generations)
        return verdict.delay
