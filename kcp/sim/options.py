"""The simulator's settings, every default written once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kcp.certs import KeyAlgorithm
from kcp.sim.addresses import DEFAULT_LOCK_DIR

__all__ = ["SimOptions"]


@dataclass
class SimOptions:
    """How a `Simulator` runs; the defaults suit tests and `kcp sim` on a 2-core laptop."""

    work_dir: Path | None = None
    """Per-run directory for machines' certificates, data and logs (None: a new temp dir)."""
    keep_work_dir: bool = False
    """Keep `work_dir` after `stop()` for its logs; a temp dir is removed otherwise."""
    namespace: str | None = None
    """Watch one namespace only (None: all)."""
    kubeconfig: Path | None = None
    """The management cluster's kubeconfig file. When set, the simulator also runs Cluster
    API's core and kubeadm bootstrap controllers against it (scoped to `namespace`), as a
    real management cluster runs them beside an infrastructure provider."""
    address_lock_dir: Path = DEFAULT_LOCK_DIR
    """Shared by every run on the machine: how two runs avoid each other's addresses."""
    key_algorithm: KeyAlgorithm = "ecdsa-p256"
    """Keys of the certificates the simulator issues to machines (ECDSA: microseconds)."""
    default_service_cidr: str = "10.96.0.0/12"
    """Service range when the Cluster names none (kubeadm's default)."""
    etcd_start_timeout: float = 60.0
    apiserver_start_timeout: float = 120.0
    workload_timeout: float = 5.0
    """Seconds any call to a workload API server may take."""
    health_check_interval: float = 1.0
    """Seconds between a load balancer's checks of each API server."""
    kubelet_interval: float = 2.0
    """Seconds between syncs of a machine's pod statuses (and restarts of crashed processes)."""
    node_lease_renew_interval: float = 10.0
    """Seconds between renewals of each Node's Lease by its kubelet (a kubelet's default)."""
    node_monitor_grace_period: float = 40.0
    """Seconds without a renewed Lease before a Node is marked unreachable (Ready=Unknown),
    kube-controller-manager's `--node-monitor-grace-period`."""
    node_monitor_period: float = 5.0
    """Seconds between the node lifecycle controller's looks (`--node-monitor-period`)."""
    machine_concurrency: int = 3
    """Machines provisioned at once (joins to one etcd cluster are serialised anyway)."""
    process_env: dict[str, str] = field(default_factory=dict)
    """Added to the environment of every machine's processes (etcd, kube-apiserver, the
    kubelet): Go runtime settings such as `GOGC`, which change what a process costs, not
    what it serves."""
    apiserver_extra_args: list[str] = field(default_factory=list)
    apiserver_audit_policy: Path | None = None
    """An audit policy file: when set, every machine's API server writes an audit log (JSON
    lines) to `logs/audit.log` in its machine directory, so requests to the workload API
    servers can be counted from outside their clients."""
