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

import math
import ssl
import time
from datetime import UTC, datetime

from kcp.etcd import DIRECT, EtcdTLS, PortForwardDialer
from kcp.tracker.credentials import Credentials
from kcp.tracker.entry import ClusterEntry, seen_marker
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.health import ProbeResult, probe_api_server, probe_etcd
from kcp.tracker.metrics import TrackerMetrics
from kcp.tracker.options import TrackerOptions
from kcp.tracker.secrets import (
    EtcdCA,
    SecretData,
    SecretReader,
    WorkloadKubeconfig,
    etcd_secret_name,
    kubeconfig_secret_name,
    kubeconfig_secret_ref,
    load_etcd_ca,
    load_kubeconfig,
)
from kcp.tracker.workload import WorkloadClient

__all__ = ["Checker"]


class Checker:
    """Runs on the tracker's workers; touches an entry only under its lock, never across I/O."""

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

    def check(self, entry: ClusterEntry) -> float | None:
        """Connect or probe one cluster (see the module docstring).

        Returns the seconds until the next check while a never-connected cluster backs
        off, else None (the regular ``probe_interval``)."""
        if entry.evicted:
            return None
        self.refresh_secrets(entry)
        with entry.lock:
            ca = entry.etcd_ca
        private_key = self._credentials.ensure_key(entry) if ca is not None else None
        if entry.evicted:
            return None
        workload = self.ensure_workload(entry)
        timeout = self.options.probe_timeout
        api = None
        if workload is not None:
            source = f"Secret {kubeconfig_secret_ref(entry.key)}"
            api = probe_api_server(workload, timeout, kubeconfig_source=source)
        etcd: ProbeResult | None = None
        with entry.lock:
            endpoints, prefer = entry.endpoints, entry.etcd_answered_by
        if ca is not None and private_key is not None and endpoints and self._etcd_due(entry):
            try:
                issued = self._credentials.certificate(entry, ca, private_key)
            except ClusterSecretError as exc:
                with entry.lock:
                    entry.etcd_error = exc
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

    def _etcd_due(self, entry: ClusterEntry) -> bool:
        """Whether this check probes etcd too (see ``TrackerOptions.etcd_probe_interval``)."""
        interval = self.options.etcd_probe_interval
        with entry.lock:
            return (
                interval is None
                or entry.state != "connected"
                or entry.etcd_ok is not True
                or time.monotonic() - entry.etcd_probed_at >= interval
            )

    def etcd_answered(self, entry: ClusterEntry) -> None:
        """The reconciler reached etcd and saw a leader: count it as this interval's probe
        (one mutual-TLS dial fewer per cluster and interval when channels are recycled)."""
        with entry.lock:
            if entry.state == "connected" and entry.etcd_ok:
                entry.etcd_probed_at = time.monotonic()

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
            message = f"reading Secret {entry.key.namespace}/{name} failed: {exc}"
            with entry.lock:
                entry.read_error = message
                entry.refresh_requested = True
            entry.log.warning("secret read failed", secret=name, error=str(exc))
            return False, None

    def refresh_secrets(self, entry: ClusterEntry) -> None:
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
            marker = seen_marker(etcd_secret)
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
                    entry.etcd_probed_at = -math.inf  # check the new material at once
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
            marker = seen_marker(kubeconfig_secret)
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

    def ensure_workload(self, entry: ClusterEntry) -> WorkloadClient | None:
        with entry.lock:
            kubeconfig, current = entry.kubeconfig, entry.workload
        if kubeconfig is None:
            if current is not None:
                with entry.lock:
                    if entry.workload is current:
                        entry.workload = None
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
            )
        except (ssl.SSLError, ValueError) as exc:
            error = ClusterSecretError(
                f"Secret {kubeconfig_secret_ref(entry.key)}: its "
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

    def record(
        self, entry: ClusterEntry, api: ProbeResult | None, etcd: ProbeResult | None
    ) -> float | None:
        """Apply one check's results; returns the backoff delay as ``check`` does."""
        results = [r for r in (api, etcd) if r is not None]
        for result in results:
            self.metrics.health_check(result.target, result.result)
        delay: float | None = None
        with entry.lock:
            if entry.evicted:
                return None
            previous = entry.state
            if results:
                entry.last_probe_time = datetime.now(UTC)
            if api is not None:
                entry.api_ok = api.ok
            if etcd is not None:
                entry.etcd_ok = etcd.ok
                entry.etcd_probed_at = time.monotonic()
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
                entry.ever_connected = True
                entry.retry_at = -math.inf
            else:
                entry.failures += 1
                entry.last_error = "; ".join(problems)
                if not entry.ever_connected:
                    if entry.state == "connecting":
                        delay = self.backoff(entry.failures)
                        entry.retry_at = time.monotonic() + delay
                elif entry.failures >= self.options.failure_threshold:
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
            if delay is not None:
                entry.log.debug(
                    "cluster not reachable yet; backing off",
                    failures=entry.failures,
                    retry_in=round(delay, 1),
                    error=entry.last_error,
                )
            return delay
        if state == "connected":
            entry.log.info("cluster connected")
        elif state == "down":
            entry.log.warning(
                "cluster disconnected; dropping its clients, keeping its key",
                failures=entry.failures,
                error=entry.last_error,
            )
            if dropped is not None:
                self.retire(dropped)
            with entry.used_lock:
                endpoints |= entry.used_endpoints
            self._credentials.discard_channels(endpoints, generations)
        return delay
