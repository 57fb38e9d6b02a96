"""What the tracker holds for one cluster, apart from its key and certificates."""

from __future__ import annotations

import math
import threading
from datetime import datetime
from typing import Any

import structlog

from kcp.etcd import EtcdTLS
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.health import ConnectionState
from kcp.tracker.identity import ClusterKey
from kcp.tracker.secrets import EtcdCA, SecretData, WorkloadKubeconfig
from kcp.tracker.workload import WorkloadClient

__all__ = ["ClusterEntry", "seen_marker"]

_log = structlog.get_logger("kcp.tracker")


class ClusterEntry:
    """Bookkeeping of one cluster; fields are read and written under ``lock`` only
    (``used_endpoints`` under ``used_lock``, shared with the ``EtcdAccess`` it hands out)."""

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
        self.tls_history: list[EtcdTLS] = []


def seen_marker(secret: SecretData | None) -> str:
    if secret is None:
        return "absent"
    return secret.resource_version or secret.digest
