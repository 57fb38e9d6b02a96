"""What every part of a reconcile shares: the cache it reads, its options, its collaborators
and the `Scope` that carries what one reconcile learned from phase to phase, which is also
what `kcp.controlplane.status` computes the status from."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView
from kcp.controlplane.condition import Condition
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.expectations import Expectations
from kcp.controlplane.health import ControlPlaneHealth
from kcp.controlplane.rollout import UpToDate
from kcp.controlplane.scaling import Decision
from kcp.controlplane.secrets import SecretStore
from kcp.controlplane.validation import MAX_REPLICAS
from kcp.controlplane.workload import TrackerLike, WorkloadCluster
from kcp.etcd import DEFAULT_ETCD_ACCESS, EtcdAccessMode, EtcdClusterStatus
from kcp.rest import Kube
from kcp.runtime.logging import get_logger

__all__ = ["Cache", "ReconcilerOptions", "Scope", "Services", "Step"]

_log = get_logger("kcp.controlplane.reconciler")


class Cache(Protocol):
    """Read-only lookups the reconciler makes in the informer caches."""

    def kubeadm_control_plane(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def cluster(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def cluster_machines(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]: ...

    def kubeadm_config(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def cluster_kubeadm_configs(
        self, namespace: str, cluster_name: str
    ) -> list[Mapping[str, Any]]: ...

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class ReconcilerOptions:
    """Requeue delays (seconds) and limits of the reconciler, with their defaults."""

    waiting_requeue: float = 5.0
    """While a step waits on Machines (provisioning, deleting, preflight checks)."""
    not_initialized_requeue: float = 10.0
    """While the first Machine comes up (its Node is not watched)."""
    unhealthy_requeue: float = 20.0
    """While some health condition is not True (Cluster API's 20 s)."""
    health_requeue: float = 600.0
    """Steady state: how often a healthy control plane is inspected again (Cluster API's
    10-minute resync) ... The tracker's probes wake a control plane at once when its
    cluster connects, goes down, or its API server or etcd changes verdict. At 60 s the
    inspections were a third of kcp's CPU at rest on 100 shared-fleet clusters (0.016
    cores with 84 reconciles a minute, 0.011 without; Cluster API's KCP 0.002)."""
    health_requeue_jitter: float = 0.2
    """... plus up to this share of it at random, so control planes reconciled together (at
    start-up, after an outage) drift apart instead of coming back as one wave each minute."""
    cache_requeue: float = 0.5
    """While the cache has not caught up with our own writes."""
    error_backoff_initial: float = 5.0
    """First requeue after a user error (bad spec, bad Secret, missing template) ..."""
    error_backoff_max: float = 300.0
    """... doubling each time the error persists, up to this. Counted in the failures the
    controller's queue keeps for the control plane (an exception's retry counts one too);
    a reconcile that succeeds resets it."""
    expectation_timeout: float = 30.0
    max_replicas: int = MAX_REPLICAS
    unreachable_event_after: int = 5
    """Failed health checks of a cluster that never connected before the user is told
    (a first boot legitimately fails a few while its first API server starts)."""
    etcd_access: EtcdAccessMode = DEFAULT_ETCD_ACCESS
    """How etcd members and each Machine's API server are reached (``--etcd-access``):
    ``port-forward`` through the workload API server to the Pods ``etcd-<node>`` and
    ``kube-apiserver-<node>`` in kube-system, as Cluster API does, or ``direct`` at the
    addresses the Pods advertise (only where node addresses are reachable from kcp)."""
    addon_check_interval: float = 600.0
    """How often, per settled control plane, the workload's kube-proxy and CoreDNS images are
    read again when the KCP has not changed (a change of its spec or skip annotations is acted
    on at once)."""


@dataclass
class Scope:
    """What one reconcile learned so far, from its first read to the status it writes."""

    kcp: dict[str, Any]
    cluster: ClusterView
    machines: list[MachineView]
    now: datetime
    initialized: bool = False
    """`status.initialization.controlPlaneInitialized`, or what kubeadm init showed since."""
    paused: bool = False
    adoption_refused: tuple[str, ...] = ()
    """Why Machines of the cluster cannot be adopted (`kcp.controlplane.adoption`): while
    any is, no Machine is created or deleted."""
    workload: WorkloadCluster | None = None
    endpoints: tuple[str, ...] = ()
    etcd: EtcdClusterStatus | None = None
    nodes_known: bool = False
    """The workload cluster's Nodes were listed this reconcile."""
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: ControlPlaneHealth | None = None
    health_conditions: tuple[Condition, ...] = ()
    """`EtcdClusterHealthy`/`ControlPlaneComponentsHealthy` to report when `health` is None."""
    certificates: Condition | None = None
    """`CertificatesAvailable`, once the certificates were looked at."""
    up_to_date: dict[str, UpToDate] = field(default_factory=dict)
    decision: Decision | None = None
    """The scaling step taken, or why none could be."""
    deleting_reason: str = ""
    deleting_message: str = ""
    extra: tuple[Condition, ...] = ()
    """Conditions a step set itself (they win over the computed ones)."""
    requeue: float | None = None
    user_errors: list[str] = field(default_factory=list)
    reported_not_connected: bool = False

    @property
    def view(self) -> KubeadmControlPlaneView:
        return KubeadmControlPlaneView(self.kcp)

    def requeue_in(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)


@dataclass
class Services:
    """The collaborators of a reconcile, built once and shared by every worker."""

    kube: Kube
    cache: Cache
    tracker: TrackerLike
    recorder: EventRecorder
    options: ReconcilerOptions
    secrets: SecretStore
    expectations: Expectations
    workload_api: Callable[[Any], Kube] | None = None
    """Wraps a workload ApiClient from the tracker (None: the default client)."""


class Step:
    """Base of the reconciler's parts: the shared collaborators under short names."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.kube = services.kube
        self.cache = services.cache
        self.tracker = services.tracker
        self.recorder = services.recorder
        self.options = services.options
        self.secrets = services.secrets
        self.expectations = services.expectations
        self.workload_api = services.workload_api

    def _user_error(self, scope: Scope, reason: str, problems: Sequence[str]) -> None:
        """A problem the user must fix: a Warning Event now, a backed-off requeue later."""
        scope.user_errors.extend(problems)
        self.recorder.warning(scope.kcp, reason, "; ".join(problems))
        _log.warning("User error", reason=reason, problems=list(problems))
