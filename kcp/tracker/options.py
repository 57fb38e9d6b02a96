"""Every tracker setting and its default, written down once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kcp.certs import DEFAULT_KEY_ALGORITHM, KEY_ALGORITHMS, KeyAlgorithm
from kcp.etcd import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_DIAL_TIMEOUT,
    DEFAULT_KEEPALIVE,
    DEFAULT_TRANSPORT,
    TRANSPORTS,
    Transport,
)

__all__ = ["CAPI_ETCD_CLIENT_COMMON_NAME", "TrackerOptions"]

CAPI_ETCD_CLIENT_COMMON_NAME = "cluster-api.x-k8s.io"
"""The subject Cluster API's KCP puts in its etcd client certificates (no organization).

etcd maps a client certificate's CN to a user when its auth is enabled, so
keeping Cluster API's name keeps existing etcd role bindings working.
"""


@dataclass(frozen=True)
class TrackerOptions:
    """How the tracker caches, probes and sizes itself. Durations are seconds unless typed."""

    capacity: int = 1000
    """Workload clusters this controller is expected to track; sizes the caches below."""

    key_cache_size: int | None = None
    """Private keys kept at most; None means ten times ``capacity``. An LRU eviction under
    load would cause a key-generation storm, so keep it well above the cluster count
    (evictions are counted in ``kcp_tracker_cache_evictions_total{cache="key"}``)."""

    key_ttl: float | None = 7 * 24 * 3600.0
    """Seconds a cluster's private key lives before a fresh one is generated (7 days);
    None keeps it until the cluster is evicted. Certificates are re-issued for a new key."""

    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM
    """``rsa-2048`` (parity with Cluster API; ~30 ms per key) or ``ecdsa-p256`` (~50 us)."""

    certificate_validity: timedelta = timedelta(hours=24)
    """Lifetime of each etcd client certificate (Cluster API issues them for 10 years)."""

    renew_fraction: float = 2 / 3
    """Share of a certificate's life after which it is replaced; it is never handed out
    past this point, so at least a third of its life remains when a caller gets it."""

    certificate_cache_size: int | None = None
    """Client certificates kept at most; None means ten times ``capacity``."""

    client_common_name: str = CAPI_ETCD_CLIENT_COMMON_NAME
    """Subject CN of the etcd client certificates."""

    client_organizations: tuple[str, ...] = ()
    """Subject O of the etcd client certificates (Cluster API sets none)."""

    probe_interval: float | None = 10.0
    """Seconds between health checks of one cluster; None turns periodic probes off
    (a cluster is still probed once when it connects)."""

    etcd_probe_interval: float | None = 60.0
    """Seconds between etcd probes of a connected cluster whose etcd last answered; the
    API server is probed every ``probe_interval`` (Cluster API probes only the API server,
    whose ``/readyz`` includes its etcd). The reconciler's etcd calls that find a leader
    count as probes. A cluster that is connecting, down, or whose etcd probe failed is
    probed in full on every check, and a changed ``-etcd`` Secret brings the next etcd
    probe forward. None probes etcd on every check. Each etcd probe of a cluster whose
    channel has left the pool costs a mutual-TLS handshake: at a thousand clusters and
    10 s that was most of the controller's CPU."""

    probe_timeout: float = 5.0
    """Seconds one probe may take: the API server's ``/readyz``, or one etcd endpoint's
    dial and ``Status`` call."""

    failure_threshold: int = 5
    """Consecutive failed health checks after which a cluster that has connected before is
    marked disconnected (any 401 from its API server disconnects at once). Failures before
    a cluster's first successful check do not count: during first boot its endpoint's load
    balancer has no backends yet, so it stays ``connecting`` (lookups raise
    ``NotConnected(reason="connecting")``) and is retried with ``connecting_backoff``."""

    connecting_backoff: float = 2.0
    """Seconds before re-checking a cluster that has never connected after its first failed
    check; doubled after each further failure up to ``connecting_backoff_max``, so clusters
    still booting do not take the probe workers from the others."""

    connecting_backoff_max: float = 10.0
    """Longest wait between checks of a cluster that has never connected."""

    probe_workers: int = 8
    """Threads shared by all clusters (never one per cluster) that connect clusters (read
    their Secrets, generate keys, dial) and run health probes. A silent cluster holds one
    for at most two probe timeouts per check, and is not checked again until it is done."""

    secret_refresh_interval: float = 600.0
    """Seconds after which a probe re-reads a cluster's ``-etcd`` and ``-kubeconfig``
    Secrets even if no Secret event said they changed (see ``Tracker.secret_event_handler``).
    Events carry the changes; this is the safety net (a Secret without the cluster-name
    label is not watched), so it is a sync period, not a poll: at 60 s a thousand
    clusters cost the management API server 33 reads a second."""

    secret_read_timeout: float = 5.0
    """Seconds a live read of a Secret from the management cluster may take."""

    api_timeout: float = 10.0
    """Default timeout (connect and read) of every request a workload API client sends
    without its own ``_request_timeout``; without it a dead TCP stream hangs forever."""

    connecting_retry_after: float = 1.0
    """``NotConnected.retry_after`` while a cluster is being connected, and the least time
    between two checks a lookup asks for. Lookups of a never-connected cluster that is
    backing off ask for none: the reconciler comes back often, the probes do not."""

    etcd_dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    """Seconds a reconciler's etcd call waits for a connection
    (``--etcd-dial-timeout-duration``)."""

    etcd_call_timeout: float = DEFAULT_CALL_TIMEOUT
    """Seconds a reconciler's etcd call waits for its answer (``--etcd-call-timeout-duration``)."""

    etcd_channels: int | None = None
    """Open etcd connections kept at most (LRU); None follows the fleet: the members of the
    clusters tracked now, plus headroom, up to ``etcd_connections_max`` (see
    ``kcp.tracker.sizing``). A bound below the members in use makes every reconcile and
    probe of a cluster whose connection was dropped open a new one (through a new
    port-forward, with two TLS handshakes): pin it only to measure that."""

    etcd_connections_max: int = 4096
    """The most etcd connections kept when ``etcd_channels`` follows the fleet
    (``--etcd-connections-max``): about 1,300 clusters of three members. Lowered, with
    the tunnels, to fit half the process's open-file limit (a port-forwarded connection
    holds three descriptors)."""

    etcd_transport: Transport = DEFAULT_TRANSPORT
    """How etcd is reached (``--etcd-transport``): ``"gateway"``, etcd's JSON gateway over
    HTTP/1.1 on the caller's thread, or ``"grpc"``, whose C core keeps an event-engine
    thread pool that grows with dialling load and does not shrink while busy."""

    tunnels_max: int | None = None
    """Port-forward tunnels kept open at most, over all clusters (least recently used closed
    first; a closed one is re-opened when next needed). None follows the etcd connections'
    bound: one tunnel per connection (two with ``etcd_transport="grpc"``, which may dial
    again while a connection is replaced) and a few for short-lived ones (a Machine's API
    server certificate read). No thread per tunnel: one I/O thread serves them all."""

    tunnel_keepalive: float | None = DEFAULT_KEEPALIVE
    """Seconds of silence after which an open tunnel is pinged; one that does not answer
    within ``probe_timeout`` is closed and re-opened on next use. None sends no pings."""

    def __post_init__(self) -> None:
        problems = []
        if self.capacity < 1:
            problems.append(f"capacity must be at least 1, got {self.capacity}")
        if self.key_algorithm not in KEY_ALGORITHMS:
            problems.append(
                f"key_algorithm {self.key_algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}"
            )
        if self.certificate_validity <= timedelta(0):
            problems.append("certificate_validity must be positive")
        if not 0.0 < self.renew_fraction < 1.0:
            problems.append(f"renew_fraction must be in (0, 1), got {self.renew_fraction}")
        for name in (
            "probe_timeout",
            "secret_read_timeout",
            "api_timeout",
            "connecting_backoff",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.probe_interval is not None and self.probe_interval <= 0:
            problems.append("probe_interval must be positive (or None to turn probes off)")
        if self.etcd_probe_interval is not None and self.etcd_probe_interval < 0:
            problems.append("etcd_probe_interval must not be negative (None: every check)")
        if self.key_ttl is not None and self.key_ttl <= 0:
            problems.append("key_ttl must be positive (or None to keep keys until eviction)")
        if self.connecting_backoff_max < self.connecting_backoff:
            problems.append("connecting_backoff_max must be at least connecting_backoff")
        if self.failure_threshold < 1:
            problems.append("failure_threshold must be at least 1")
        for name in ("etcd_channels", "tunnels_max"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1 (or None to follow the fleet)")
        if self.etcd_connections_max < 1:
            problems.append("etcd_connections_max must be at least 1")
        if self.tunnel_keepalive is not None and self.tunnel_keepalive <= 0:
            problems.append("tunnel_keepalive must be positive (or None for no pings)")
        if self.probe_workers < 1:
            problems.append("probe_workers must be at least 1")
        if self.etcd_transport not in TRANSPORTS:
            problems.append(f"etcd_transport must be one of {', '.join(TRANSPORTS)}")
        if problems:
            raise ValueError("invalid tracker options: " + "; ".join(problems))

    @property
    def key_cache_maxsize(self) -> int:
        return self.key_cache_size or 10 * self.capacity

    @property
    def certificate_cache_maxsize(self) -> int:
        return self.certificate_cache_size or 10 * self.capacity
