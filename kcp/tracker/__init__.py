"""Per-cluster accessor: keys, certificates, workload clients, health, eviction.

The reconciler holds one ``Tracker`` and calls ``etcd_access(key, endpoints)``,
``workload_client(key)`` and ``health(key)`` with a ``ClusterKey`` (namespace,
name, UID). Lookups never wait: a cluster that is being connected or is down
raises ``NotConnected`` (requeue after ``retry_after``); a missing or unusable
``-etcd``/``-kubeconfig`` Secret raises ``ClusterSecretError``, whose message
belongs in a condition. Attach ``cluster_event_handler()`` to a Cluster
informer so deleted clusters are evicted at once. Every default is in
``TrackerOptions``.
"""

from kcp.tracker.access import EtcdAccess
from kcp.tracker.errors import ClusterSecretError, NotConnected, TrackerError
from kcp.tracker.health import ClusterHealth, ConnectionState
from kcp.tracker.identity import ClusterKey
from kcp.tracker.metrics import TrackerStats
from kcp.tracker.options import CAPI_ETCD_CLIENT_COMMON_NAME, TrackerOptions
from kcp.tracker.secrets import ApiSecretReader, InMemorySecrets, SecretData, SecretReader
from kcp.tracker.tracker import Tracker
from kcp.tracker.workload import WorkloadClient

__all__ = [
    "CAPI_ETCD_CLIENT_COMMON_NAME",
    "ApiSecretReader",
    "ClusterHealth",
    "ClusterKey",
    "ClusterSecretError",
    "ConnectionState",
    "EtcdAccess",
    "InMemorySecrets",
    "NotConnected",
    "SecretData",
    "SecretReader",
    "Tracker",
    "TrackerError",
    "TrackerOptions",
    "TrackerStats",
    "WorkloadClient",
]
