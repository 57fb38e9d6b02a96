"""What the tracker holds for one cluster, apart from its key and certificates.

``ClusterEntry`` owns its state: its methods are the transitions there are (a
check's verdict, a Secret read, a workload client installed, eviction ...), each
taken under the entry's lock. Other modules call them and read ``view()`` (one
consistent snapshot); they never assign a field, so every way a cluster's state
can change is listed here (``tests/unit/tracker/test_entry_owner.py`` checks it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from kcp.etcd import EtcdTLS
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.health import ClusterHealth, ConnectionState, ProbeResult
from kcp.tracker.identity import ClusterKey
from kcp.tracker.secrets import EtcdCA, SecretData, WorkloadKubeconfig
from kcp.tracker.workload import WorkloadClient

__all__ = [
    "ClusterEntry",
    "EntryView",
    "Eviction",
    "SecretKind",
    "Verdict",
    "members_of",
    "seen_marker",
]

_log = structlog.get_logger("kcp.tracker")

SecretKind = Literal["etcd", "kubeconfig"]

_TLS_GENERATIONS_KEPT = 2
"""Certificates whose etcd channels stay open: the current one and the one before."""


def members_of(endpoints: tuple[str, ...]) -> int:
    """The etcd members a cluster counts for: its endpoints, one while none are known."""
    return max(len(endpoints), 1)


def seen_marker(secret: SecretData | None) -> str:
    """What tells one read of a Secret from the next (its resourceVersion, else digest)."""
    if secret is None:
        return "absent"
    return secret.resource_version or secret.digest


@dataclass(frozen=True)
class EntryView:
    """What lookups and checks read of an entry, taken at one instant under its lock (each
    field is the entry's field of that name)."""

    state: ConnectionState
    endpoints: tuple[str, ...]
    etcd_ca: EtcdCA | None
    etcd_error: ClusterSecretError | None
    kubeconfig: WorkloadKubeconfig | None
    kubeconfig_error: ClusterSecretError | None
    workload: WorkloadClient | None
    etcd_answered_by: str
    last_error: str
    read_error: str
    failures: int


@dataclass
class Eviction:
    """What an evicted entry gave up, for the caller to close outside its lock."""

    workload: WorkloadClient | None
    generations: list[EtcdTLS]
    endpoints: set[str]
    members: int


@dataclass
class Verdict:
    """The outcome of recording one check (see ``ClusterEntry.record``)."""

    previous: ConnectionState
    state: ConnectionState
    delay: float | None = None
    """Seconds to wait before the next check while a never-connected cluster backs off."""
    dropped: WorkloadClient | None = None
    generations: list[EtcdTLS] = field(default_factory=list)
    endpoints: set[str] = field(default_factory=set)
    """Endpoints whose channels to close (the cluster went down)."""
    failures: int = 0
    last_error: str = ""
    health_changed: bool = False
    """Whether the state changed or a target's earlier verdict (``api_server_ok``,
    ``etcd_ok``) turned: worth a reconcile now rather than at its period."""


class ClusterEntry:
    """Bookkeeping of one cluster; fields are guarded by ``lock`` and written only by the
    methods below (``used_endpoints`` by ``used_lock``, shared with the ``EtcdAccess``
    handed out, which adds to it)."""

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
        self.ever_connected = False
        """Whether a check ever succeeded: only then do failures count towards "down"."""
        self.retry_at = -math.inf
        """Monotonic time of the next check while a never-connected cluster backs off."""
        self.last_probe_time: datetime | None = None
        self.last_kick = -math.inf
        self.etcd_answered_by = ""
        self.etcd_probed_at = -math.inf
        """Monotonic time of the last etcd probe (see ``etcd_probe_interval``)."""
        self.api_answered_at = -math.inf
        """Monotonic time the reconciler last read from the API server of a connected,
        healthy cluster: the probe in the same interval is skipped."""
        self.tls_history: list[EtcdTLS] = []

    def view(self) -> EntryView:
        with self.lock:
            return EntryView(**{spec.name: getattr(self, spec.name) for spec in fields(EntryView)})

    # -- what the reconciler's lookups change ---------------------------------------------

    def set_endpoints(self, wanted: tuple[str, ...]) -> tuple[int, bool] | None:
        """Remember the etcd endpoints; None if nothing changed, else the change in members
        and whether the cluster is still connecting."""
        with self.lock:
            if wanted == self.endpoints or self.evicted:
                return None
            change = members_of(wanted) - members_of(self.endpoints)
            self.endpoints = wanted
            return change, self.state == "connecting"

    def kick(self, now: float, least_interval: float, *, backing_off_too: bool) -> bool:
        """Whether a check may be asked for now (at most once per ``least_interval``, and
        not while a never-connected cluster backs off unless ``backing_off_too``)."""
        with self.lock:
            if now - self.last_kick < least_interval:
                return False
            if now < self.retry_at and not backing_off_too:
                return False
            self.last_kick = now
            return True

    def request_refresh(self) -> None:
        """Re-read the Secrets at the next check."""
        with self.lock:
            self.refresh_requested = True

    def secret_event(self, kind: SecretKind, version: str, *, deleted: bool) -> bool:
        """A watch saw this cluster's Secret change; True if it asks for a refresh (not when
        it reports the version already read)."""
        with self.lock:
            seen = self.etcd_seen if kind == "etcd" else self.kubeconfig_seen
            if not deleted and version and version == seen:
                return False
            self.refresh_requested = True
            return True

    def etcd_answered(self) -> None:
        """The reconciler reached etcd and saw a leader: it counts as this interval's probe
        (one mutual-TLS dial fewer per cluster and interval when channels are recycled)."""
        with self.lock:
            if self.state == "connected" and self.etcd_ok:
                self.etcd_probed_at = time.monotonic()

    def api_answered(self) -> None:
        """The reconciler read from the workload API server: it counts as this interval's
        probe (at a reconcile every few seconds, most `/readyz` requests are saved)."""
        with self.lock:
            if self.state == "connected" and self.api_ok:
                self.api_answered_at = time.monotonic()

    def evict(self) -> Eviction:
        """Mark the entry evicted and hand over what must be closed."""
        with self.lock:
            self.evicted = True
            workload, self.workload = self.workload, None
            generations, self.tls_history = self.tls_history, []
            endpoints, members = set(self.endpoints), members_of(self.endpoints)
        with self.used_lock:
            endpoints |= self.used_endpoints
        return Eviction(workload, generations, endpoints, members)

    def health(self) -> ClusterHealth:
        """The probes' verdict with every known problem, as the reconciler reads it."""
        with self.lock:
            secret_problems = [
                str(e) for e in (self.etcd_error, self.kubeconfig_error) if e is not None
            ]
            last_error = "; ".join(
                p for p in (self.last_error, *secret_problems, self.read_error) if p
            )
            return ClusterHealth(
                connected=self.state == "connected",
                api_server_ok=self.api_ok,
                etcd_ok=self.etcd_ok,
                last_error=last_error,
                consecutive_failures=self.failures,
                last_probe_time=self.last_probe_time,
                state=self.state,
            )

    # -- what the workers change ----------------------------------------------------------

    def unless_evicted(self, action: Callable[[], None]) -> bool:
        """Run ``action`` under the lock unless the entry is evicted (so that eviction
        cannot come between the test and the action); returns whether it ran."""
        with self.lock:
            if self.evicted:
                return False
            action()
            return True

    def refresh_due(self, now: float, interval: float) -> bool:
        """Whether the Secrets are to be read now; if so, the read starts here."""
        with self.lock:
            due = self.refresh_requested or now - self.secrets_read_at >= interval
            if due:
                self.refresh_requested = False
                self.secrets_read_at = now
                self.read_error = ""
            return due

    def secret_read_failed(self, message: str) -> None:
        with self.lock:
            self.read_error = message
            self.refresh_requested = True

    def secret_changed(self, kind: SecretKind, marker: str) -> bool:
        with self.lock:
            return marker != (self.etcd_seen if kind == "etcd" else self.kubeconfig_seen)

    def etcd_secret_loaded(
        self, marker: str, ca: EtcdCA | None, error: ClusterSecretError | None
    ) -> EtcdCA | None:
        """Keep a fresh read of the ``-etcd`` Secret; returns the CA it replaces."""
        with self.lock:
            previous = self.etcd_ca
            self.etcd_seen, self.etcd_ca, self.etcd_error = marker, ca, error
            self.etcd_probed_at = -math.inf  # check the new material at once
            return previous

    def kubeconfig_secret_loaded(
        self,
        marker: str,
        kubeconfig: WorkloadKubeconfig | None,
        error: ClusterSecretError | None,
    ) -> None:
        with self.lock:
            self.kubeconfig_seen = marker
            self.kubeconfig, self.kubeconfig_error = kubeconfig, error

    def etcd_unusable(self, error: ClusterSecretError) -> None:
        """The ``-etcd`` Secret's CA cannot sign a client certificate."""
        with self.lock:
            self.etcd_error = error

    def kubeconfig_unusable(self, error: ClusterSecretError) -> None:
        """The ``-kubeconfig`` Secret's credentials cannot be used for TLS."""
        with self.lock:
            self.kubeconfig_error = error

    def api_due(self, interval: float | None) -> bool:
        """Whether this check probes the API server: not when the reconciler read from it
        within ``interval`` of a connected, healthy cluster."""
        with self.lock:
            return self._due(self.api_ok, self.api_answered_at, interval)

    def etcd_due(self, interval: float | None) -> bool:
        """Whether this check probes etcd too (see ``TrackerOptions.etcd_probe_interval``)."""
        with self.lock:
            return self._due(self.etcd_ok, self.etcd_probed_at, interval)

    def _due(self, ok: bool | None, last: float, interval: float | None) -> bool:
        """A probe is due unless the cluster is connected, this target answered, and it did
        so within ``interval`` (caller holds the lock)."""
        return (
            interval is None
            or self.state != "connected"
            or ok is not True
            or time.monotonic() - last >= interval
        )

    def drop_workload(self, current: WorkloadClient) -> None:
        """Forget ``current`` (its kubeconfig is gone) unless another replaced it already."""
        with self.lock:
            if self.workload is current:
                self.workload = None

    def install_workload(self, fresh: WorkloadClient) -> WorkloadClient | None:
        """Make ``fresh`` the cluster's client; returns the one to retire: the one it
        replaces, or ``fresh`` itself when the entry was evicted meanwhile."""
        with self.lock:
            if self.evicted:
                return fresh
            replaced, self.workload = self.workload, fresh
            return replaced

    def remember_tls(self, tls: EtcdTLS) -> tuple[list[EtcdTLS], set[str]] | None:
        """Note a certificate handed out; returns the superseded ones whose channels are to
        close and the endpoints they reach, or None when the entry is evicted."""
        with self.lock:
            if self.evicted:
                return None
            self.tls_history.append(tls)
            retired: list[EtcdTLS] = []
            while len(self.tls_history) > _TLS_GENERATIONS_KEPT:
                retired.append(self.tls_history.pop(0))
            endpoints = set(self.endpoints)
        if retired:
            with self.used_lock:
                endpoints |= self.used_endpoints
        return retired, endpoints

    def record(
        self,
        api: ProbeResult | None,
        etcd: ProbeResult | None,
        *,
        failure_threshold: int,
        backoff: Callable[[int], float],
        on_change: Callable[[bool], None],
    ) -> Verdict | None:
        """Apply one check's results (see ``kcp.tracker.checks``); None if evicted.

        ``on_change(connected)`` runs under the lock when the state changes, so an
        eviction (which removes the cluster's metric series after marking it evicted)
        cannot be overtaken by it."""
        results = [r for r in (api, etcd) if r is not None]
        with self.lock:
            if self.evicted:
                return None
            verdict = Verdict(previous=self.state, state=self.state)
            before = (self.api_ok, self.etcd_ok)
            if results:
                self.last_probe_time = datetime.now(UTC)
            if api is not None:
                self.api_ok = api.ok
            if etcd is not None:
                self.etcd_ok = etcd.ok
                self.etcd_probed_at = time.monotonic()
                if etcd.ok:
                    self.etcd_answered_by = etcd.answered_by
            problems = [r.error for r in results if not r.ok]
            if not results:
                pass  # nothing to probe yet (Secrets missing or unreadable, no endpoints)
            elif not problems:
                self.failures, self.last_error = 0, ""
                self.state, self.ever_connected, self.retry_at = "connected", True, -math.inf
            else:
                self.failures += 1
                self.last_error = "; ".join(problems)
                if any(r.result == "unauthorized" for r in results):
                    self.state = "down"
                elif not self.ever_connected:
                    if self.state == "connecting":
                        verdict.delay = backoff(self.failures)
                        self.retry_at = time.monotonic() + verdict.delay
                elif self.failures >= failure_threshold:
                    self.state = "down"
            verdict.state = self.state
            # A first verdict is no news to a reconcile that found the target itself.
            verdict.health_changed = verdict.state != verdict.previous or any(
                was is not None and was != now
                for was, now in zip(before, (self.api_ok, self.etcd_ok), strict=True)
            )
            if verdict.state == "down" and verdict.previous != "down":
                verdict.dropped, self.workload = self.workload, None
                verdict.generations = list(self.tls_history)
                verdict.endpoints = set(self.endpoints)
                self.refresh_requested = True
            if verdict.state != verdict.previous:
                on_change(verdict.state == "connected")
            verdict.failures, verdict.last_error = self.failures, self.last_error
        if verdict.state == "down" and verdict.previous != "down":
            with self.used_lock:
                verdict.endpoints |= self.used_endpoints
        return verdict
