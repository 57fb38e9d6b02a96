"""The KubeadmControlPlane reconciler: the one-method seam `reconcile(key) -> Result`.

One reconcile reads the KubeadmControlPlane, its Cluster and Machines from the
informer caches, then runs the phases in Cluster API's order — certificates,
kubeconfig, health, one scaling or rollout step — and ends by writing the
status. Each phase records what it learned; errors a user can cause become a
condition, an Event and a requeue with backoff, never an exception loop. A
workload cluster the tracker cannot serve right now makes the reconcile return
at once with a requeue: a worker never waits on a cluster.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView
from kcp.certs import CertificateError
from kcp.controlplane.certificates import load_cluster_ca, reconcile_certificates
from kcp.controlplane.client import NETWORK_ERRORS, ApiError, Kube
from kcp.controlplane.condition import Condition
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.expectations import Expectations
from kcp.controlplane.expiry import (
    apiserver_endpoint,
    expiry_annotation,
    recorded_expiry,
    serving_certificate_expiry,
)
from kcp.controlplane.health import ControlPlaneHealth, machine_health
from kcp.controlplane.kubeconfig import reconcile_kubeconfig
from kcp.controlplane.lifecycle import (
    add_finalizer,
    is_paused,
    owned_control_plane_machines,
    plan_deletion,
    remove_finalizer,
)
from kcp.controlplane.machines import MachineTemplateError, create_machine
from kcp.controlplane.membership import QuorumAtRisk, remove_machine_member
from kcp.controlplane.rollout import UpToDate, infra_cloned_from, machine_up_to_date
from kcp.controlplane.scaling import Decision, MachineState, decide
from kcp.controlplane.secrets import SecretStore
from kcp.controlplane.status import StatusInputs, compute_status, write_conditions
from kcp.controlplane.validation import MAX_REPLICAS, validate_spec
from kcp.controlplane.workload import (
    NotConnected,
    TrackerLike,
    WorkloadCluster,
    machine_etcd_endpoints,
)
from kcp.etcd import EtcdClusterStatus, EtcdError
from kcp.runtime.controller import ObjectKey, Result
from kcp.runtime.logging import get_logger
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.identity import ClusterKey

__all__ = ["Cache", "KubeadmControlPlaneReconciler", "ReconcilerOptions"]

_log = get_logger("kcp.controlplane.reconciler")

NETWORK_ERRORS_AND_API: tuple[type[BaseException], ...] = (ApiError, *NETWORK_ERRORS)

_POD_HEALTH = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
)


class Cache(Protocol):
    """Read-only lookups the reconciler makes in the informer caches."""

    def kubeadm_control_plane(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def cluster(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def cluster_machines(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]: ...

    def kubeadm_config(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

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
    health_requeue: float = 60.0
    """Steady state: how often a healthy control plane is inspected again."""
    cache_requeue: float = 0.5
    """While the cache has not caught up with our own writes."""
    error_backoff_initial: float = 5.0
    """First requeue after a user error (bad spec, bad Secret, missing template) ..."""
    error_backoff_max: float = 300.0
    """... doubling each time the error persists, up to this."""
    expectation_timeout: float = 30.0
    max_replicas: int = MAX_REPLICAS


@dataclass
class _Scope:
    """What one reconcile learned so far."""

    kcp: dict[str, Any]
    cluster: ClusterView
    machines: list[MachineView]
    now: datetime
    status: StatusInputs
    workload: WorkloadCluster | None = None
    endpoints: tuple[str, ...] = ()
    etcd: EtcdClusterStatus | None = None
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: ControlPlaneHealth | None = None
    up_to_date: dict[str, UpToDate] = field(default_factory=dict)
    requeue: float | None = None
    user_errors: list[str] = field(default_factory=list)
    reported_not_connected: bool = False

    @property
    def view(self) -> KubeadmControlPlaneView:
        return KubeadmControlPlaneView(self.kcp)

    def requeue_in(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)


class KubeadmControlPlaneReconciler:
    """Reconciles one KubeadmControlPlane per call; safe to call from many workers at once."""

    def __init__(
        self,
        kube: Kube,
        cache: Cache,
        tracker: TrackerLike,
        *,
        recorder: EventRecorder | None = None,
        options: ReconcilerOptions | None = None,
        clock: Callable[[], datetime] | None = None,
        workload_api: Callable[[Any], Kube] | None = None,
    ) -> None:
        self.kube = kube
        self.cache = cache
        self.tracker = tracker
        self.recorder = recorder or EventRecorder(kube)
        self.options = options or ReconcilerOptions()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.workload_api = workload_api
        """Wraps a workload ApiClient from the tracker into the client the reconciler uses."""
        self.secrets = SecretStore(kube, cache.secret)
        self.expectations = Expectations(self.options.expectation_timeout)
        self._failures: dict[str, int] = {}
        self._failures_lock = threading.Lock()

    def __call__(self, key: ObjectKey) -> Result:
        return self.reconcile(key)

    # -- the seam ---------------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result:
        cached = self.cache.kubeadm_control_plane(key.namespace, key.name)
        if cached is None:
            return Result()
        kcp: dict[str, Any] = copy.deepcopy(dict(cached))
        view = KubeadmControlPlaneView(kcp)
        cluster_name = view.cluster_name
        owner = view.owner(groups.CLUSTER_GROUP, groups.CLUSTER.kind)
        cluster_obj = self.cache.cluster(view.namespace, owner.name) if owner else None
        if cluster_obj is None:
            if view.is_deleting:
                return self._delete(kcp, None, cluster_name)
            if owner is None:
                _log.info("Waiting for the Cluster controller to set the owner reference")
                return Result()
            _log.info("Owner Cluster not found", cluster=owner.name)
            return Result(requeue_after=self.options.waiting_requeue)
        cluster = ClusterView(copy.deepcopy(dict(cluster_obj)))
        if view.is_deleting:
            return self._delete(kcp, cluster, cluster.name)
        patched = add_finalizer(self.kube, kcp)
        if patched is not None:
            kcp = patched
        now = self.clock()
        if is_paused(view, cluster):
            self._write_status(
                StatusInputs(
                    kcp=KubeadmControlPlaneView(kcp),
                    cluster_name=cluster.name,
                    machines=self._machines(KubeadmControlPlaneView(kcp), cluster.name),
                    initialized=view.control_plane_initialized,
                    paused=True,
                ),
                now,
                paused_only=True,
            )
            return Result()
        return self._reconcile(kcp, cluster, now)

    # -- normal reconcile -------------------------------------------------------------

    def _machines(self, kcp: KubeadmControlPlaneView, cluster_name: str) -> list[MachineView]:
        return owned_control_plane_machines(
            kcp, self.cache.cluster_machines(kcp.namespace, cluster_name)
        )

    def _reconcile(self, kcp: dict[str, Any], cluster: ClusterView, now: datetime) -> Result:
        view = KubeadmControlPlaneView(kcp)
        machines = self._machines(view, cluster.name)
        waiting = self.expectations.pending(view.uid, {m.name: m.raw for m in machines})
        if waiting:
            _log.debug("Waiting for the cache", pending=waiting)
            return Result(requeue_after=self.options.cache_requeue)
        scope = _Scope(
            kcp=kcp,
            cluster=cluster,
            machines=machines,
            now=now,
            status=StatusInputs(
                kcp=view,
                cluster_name=cluster.name,
                machines=machines,
                initialized=view.control_plane_initialized,
            ),
        )
        try:
            self._phases(scope)
        finally:
            scope.status.machines = scope.machines
            scope.status.up_to_date = scope.up_to_date
            scope.status.health = scope.health
            self._write_status(scope.status, now)
        return self._result(scope)

    def _phases(self, scope: _Scope) -> None:
        view = scope.view
        problems = validate_spec(view, max_replicas=self.options.max_replicas)
        if problems:
            self._user_error(scope, "InvalidSpec", problems)
            scope.status.extra = (
                Condition.unknown(c.SCALING_UP, "InvalidSpec", "\n".join(problems)),
                Condition.unknown(c.SCALING_DOWN, "InvalidSpec", "\n".join(problems)),
            )
        cluster = scope.cluster
        # Certificates come first: an infrastructure provider may need the cluster CA (the
        # local simulator's load balancer does) and they depend on nothing else.
        certificates = reconcile_certificates(
            self.secrets,
            scope.kcp,
            cluster.name,
            may_generate=not scope.machines and not view.control_plane_initialized,
        )
        scope.status.certificates = certificates.condition
        for name in certificates.created:
            _log.info("Created cluster certificate Secret", secret=name)
        if certificates.problems:
            self._user_error(scope, "CertificatesNotAvailable", certificates.problems)
        if not cluster.infrastructure_provisioned:
            self._waiting_health(
                scope,
                "Waiting for Cluster status.initialization.infrastructureProvisioned to be true",
            )
            return
        endpoint = cluster.control_plane_endpoint
        if endpoint is None:
            self._waiting_health(scope, "Waiting for Cluster spec.controlPlaneEndpoint to be set")
            return
        self._kubeconfig(scope, endpoint)
        self._compare(scope)
        self._inspect(scope)
        self._cleanup_deleting(scope)
        if problems:
            return
        decision = decide(
            desired=view.replicas,
            max_surge=view.max_surge,
            machines=self._states(scope),
            failure_domains=cluster.control_plane_failure_domains,
            certificates_available=certificates.available,
        )
        scope.status.decision = decision
        self._act(scope, decision)
        if decision.action == "none" and scope.status.initialized:
            self._record_certificate_expiries(scope)

    def _waiting_health(self, scope: _Scope, message: str) -> None:
        scope.status.health_conditions = (
            Condition.unknown(c.ETCD_CLUSTER_HEALTHY, c.INSPECTION_FAILED_REASON, message),
            Condition.unknown(
                c.CONTROL_PLANE_COMPONENTS_HEALTHY, c.INSPECTION_FAILED_REASON, message
            ),
        )
        scope.requeue_in(self.options.not_initialized_requeue)

    def _kubeconfig(self, scope: _Scope, endpoint: tuple[str, int]) -> None:
        namespace = scope.view.namespace
        try:
            ca = load_cluster_ca(self.secrets, namespace, scope.cluster.name)
        except CertificateError:
            ca = None  # reported by CertificatesAvailable
        outcome = reconcile_kubeconfig(
            self.secrets, scope.kcp, scope.cluster.name, endpoint, ca, now=scope.now
        )
        if outcome.action in ("created", "rotated"):
            _log.info("Kubeconfig Secret written", action=outcome.action)
            if outcome.action == "rotated":
                self.recorder.normal(
                    scope.kcp,
                    "KubeconfigRotated",
                    "Rotated the client certificate of Secret "
                    f"{namespace}/{scope.cluster.name}-kubeconfig",
                )
        elif outcome.problem:
            self.recorder.warning(scope.kcp, "KubeconfigNotAvailable", outcome.problem)
            scope.requeue_in(self.options.waiting_requeue)

    def _compare(self, scope: _Scope) -> None:
        """Which Machines are up to date; the cached KubeadmConfigs say what they run."""
        view = scope.view
        for machine in scope.machines:
            config_ref = machine.bootstrap_config_ref
            config = (
                self.cache.kubeadm_config(view.namespace, config_ref.name)
                if config_ref is not None and config_ref.kind == groups.KUBEADM_CONFIG.kind
                else None
            )
            config_spec = (config or {}).get("spec") if config is not None else None
            scope.up_to_date[machine.name] = machine_up_to_date(
                view,
                machine,
                kubeadm_config_spec=config_spec if isinstance(config_spec, Mapping) else None,
                infra_cloned_from=infra_cloned_from(machine.raw),
                now=scope.now,
                certificates_expiry=recorded_expiry(machine, config),
            )

    # -- health -----------------------------------------------------------------------

    def _inspect(self, scope: _Scope) -> None:
        """Read Nodes, Pods and etcd through the tracker; set per-Machine conditions."""
        if not scope.machines:
            return
        cluster_key = ClusterKey.from_object(scope.cluster.raw)
        workload = (
            WorkloadCluster(self.tracker, cluster_key, api=self.workload_api)
            if self.workload_api is not None
            else WorkloadCluster(self.tracker, cluster_key)
        )
        scope.workload = workload
        nodes: dict[str, dict[str, Any]] | None = None
        pods: dict[str, dict[str, Any]] = {}
        workload_error: str | None = None
        workload_reason = c.INSPECTION_FAILED_REASON
        try:
            nodes = workload.nodes()
            pods = workload.control_plane_pods()
        except NotConnected as error:
            nodes = None
            workload_error, workload_reason = str(error), c.CONNECTION_DOWN_REASON
            self._not_connected(scope, error)
        except NETWORK_ERRORS_AND_API as error:
            nodes = None
            workload_error = f"{type(error).__name__}: {error}"
            scope.requeue_in(self.options.unhealthy_requeue)
        etcd_error: str | None = None
        etcd_reason = c.INSPECTION_FAILED_REASON
        by_machine = machine_etcd_endpoints(pods, scope.machines)
        scope.endpoints = tuple(dict.fromkeys(e for es in by_machine.values() for e in es))
        if not scope.endpoints:
            etcd_error = "no etcd endpoint is known yet (no Machine reports an address)"
        else:
            try:
                scope.etcd = workload.etcd_status(scope.endpoints)
            except NotConnected as error:
                etcd_error, etcd_reason = str(error), c.CONNECTION_DOWN_REASON
                self._not_connected(scope, error)
            except EtcdError as error:
                etcd_error = str(error)
                scope.requeue_in(self.options.unhealthy_requeue)
        scope.pods = pods
        scope.health = machine_health(
            scope.machines,
            nodes,
            pods,
            scope.etcd,
            workload_error=workload_error,
            workload_reason=workload_reason,
            etcd_error=etcd_error,
            etcd_reason=etcd_reason,
            etcd_endpoints=by_machine,
        )
        if nodes is not None and any(m.node_name in nodes for m in scope.machines if m.node_name):
            scope.status.initialized = True
        self._write_machine_conditions(scope)

    def _not_connected(self, scope: _Scope, error: NotConnected) -> None:
        """Requeue when the tracker says; tell the user when it is theirs to fix or lasts."""
        scope.requeue_in(error.retry_after)
        if scope.reported_not_connected:
            return
        scope.reported_not_connected = True
        if isinstance(error, ClusterSecretError):
            self._user_error(scope, "InvalidClusterSecret", [str(error)])
        elif error.reason == "down":
            # A stable message, so that repeats add to one Event's count.
            self.recorder.warning(
                scope.kcp,
                "WorkloadClusterUnreachable",
                f"The workload cluster {scope.view.namespace}/{scope.cluster.name} does not "
                "answer kcp's health checks; check its control-plane endpoint, API servers and "
                "etcd members (details in the EtcdClusterHealthy and "
                "ControlPlaneComponentsHealthy conditions)",
            )

    def _write_machine_conditions(self, scope: _Scope) -> None:
        assert scope.health is not None
        for index, machine in enumerate(scope.machines):
            computed = list(scope.health.machines.get(machine.name, ()))
            result = scope.up_to_date.get(machine.name)
            if result is not None:
                computed.append(
                    Condition.true(c.UP_TO_DATE, c.UP_TO_DATE_REASON)
                    if result.up_to_date
                    else Condition.false(c.UP_TO_DATE, c.NOT_UP_TO_DATE_REASON, result.message)
                )
            try:
                written = write_conditions(
                    self.kube, groups.MACHINE, machine.raw, computed, now=scope.now
                )
            except ApiError as error:
                _log.warning(
                    "Machine conditions not written", machine=machine.name, error=str(error)
                )
                continue
            scope.machines[index] = MachineView(written)

    def _record_certificate_expiries(self, scope: _Scope) -> None:
        """Read, once per Machine, when its API server certificate expires (Cluster API's way)."""
        ca_pem: bytes | None = None
        for machine in scope.machines:
            config_ref = machine.bootstrap_config_ref
            if machine.is_deleting or config_ref is None:
                continue
            config = self.cache.kubeadm_config(machine.namespace, config_ref.name)
            if config is None or recorded_expiry(machine, config) is not None:
                continue
            endpoint = apiserver_endpoint(machine, scope.pods)
            if endpoint is None:
                continue
            if ca_pem is None:
                try:
                    ca = load_cluster_ca(self.secrets, scope.view.namespace, scope.cluster.name)
                except CertificateError:
                    return
                if ca is None:
                    return
                ca_pem = ca.cert_pem
            try:
                expiry = serving_certificate_expiry(endpoint, ca_pem)
            except (OSError, ValueError) as error:
                _log.debug("Certificate expiry not read", machine=machine.name, error=str(error))
                continue
            try:
                self.kube.merge_patch(
                    groups.KUBEADM_CONFIG,
                    machine.namespace,
                    config_ref.name,
                    expiry_annotation(expiry),
                )
            except ApiError as error:
                if not error.not_found:
                    raise

    # -- deleting Machines ------------------------------------------------------------

    def _cleanup_deleting(self, scope: _Scope) -> None:
        """Release our pre-terminate hook on deleting Machines once their member is gone."""
        for machine in scope.machines:
            if not machine.is_deleting:
                continue
            if labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION not in machine.annotations:
                continue
            if machine.node_name and scope.workload is not None:
                if scope.etcd is None:
                    scope.requeue_in(self.options.waiting_requeue)
                    continue
                try:
                    removal = remove_machine_member(
                        scope.workload, scope.endpoints, scope.etcd, machine, scope.machines
                    )
                except QuorumAtRisk as risk:
                    _log.info("Holding Machine deletion", machine=machine.name, reason=str(risk))
                    scope.requeue_in(self.options.waiting_requeue)
                    continue
                except (EtcdError, NotConnected) as error:
                    self.recorder.warning(
                        scope.kcp,
                        "FailedEtcdMemberRemoval",
                        f"Failed to remove the etcd member of Machine {machine.name}: {error}",
                    )
                    scope.requeue_in(self.options.waiting_requeue)
                    continue
                self._member_removed(
                    scope, machine, removal.member, removal.removed, removal.leader_moved_to
                )
            self._release_hook(machine)

    def _release_hook(self, machine: MachineView) -> None:
        annotations = {labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION: None}
        try:
            self.kube.merge_patch(
                groups.MACHINE,
                machine.namespace,
                machine.name,
                {"metadata": {"annotations": annotations}},
            )
        except ApiError as error:
            if not error.not_found:
                raise

    def _member_removed(
        self, scope: _Scope, machine: MachineView, member: str, removed: bool, moved_to: str | None
    ) -> None:
        if not removed:
            return
        moved = f"; etcd leadership moved to {moved_to}" if moved_to else ""
        self.recorder.normal(
            scope.kcp,
            "EtcdMemberRemoved",
            f"Removed etcd member {member} of Machine {machine.name}{moved}",
        )
        _log.info(
            "Removed etcd member", member=member, machine=machine.name, leader_moved_to=moved_to
        )

    # -- decisions and actions --------------------------------------------------------

    def _states(self, scope: _Scope) -> list[MachineState]:
        states: list[MachineState] = []
        health = scope.health
        for machine in scope.machines:
            problems: list[str] = []
            components_unhealthy = False
            conditions = health.machines.get(machine.name, ()) if health else ()
            if machine.node_name is not None:
                if not conditions:
                    problems.append(f"Machine {machine.name} health is not known yet")
                for condition in conditions:
                    if condition.is_true:
                        continue
                    state = "false" if condition.status == c.FALSE else "unknown"
                    detail = f" ({condition.message})" if condition.message else ""
                    problems.append(
                        f"Machine {machine.name} reports {condition.type} condition is "
                        f"{state}{detail}"
                    )
                    if condition.type in _POD_HEALTH:
                        components_unhealthy = True
            result = scope.up_to_date.get(machine.name)
            states.append(
                MachineState(
                    name=machine.name,
                    created=machine.creation_timestamp,
                    failure_domain=machine.failure_domain,
                    deleting=machine.is_deleting,
                    up_to_date=result.up_to_date if result is not None else True,
                    delete_requested=labels.DELETE_MACHINE_ANNOTATION in machine.annotations,
                    has_node=machine.node_name is not None,
                    problems=tuple(problems),
                    components_unhealthy=components_unhealthy,
                )
            )
        return states

    def _act(self, scope: _Scope, decision: Decision) -> None:
        if decision.action in ("init", "scale_up"):
            self._create(scope, decision)
        elif decision.action == "scale_down" and decision.machine is not None:
            self._scale_down(scope, decision)
        elif decision.action == "wait":
            _log.info(
                "Waiting for control plane to pass preflight checks",
                reason=decision.reason,
                blocked=list(decision.blocked),
            )
            if decision.blocked and not any("being deleted" in b for b in decision.blocked):
                self.recorder.warning(
                    scope.kcp,
                    "ControlPlaneUnhealthy",
                    "Waiting for control plane to pass preflight checks to continue "
                    f"reconciliation: {'; '.join(decision.blocked)}",
                )
            scope.requeue_in(self.options.waiting_requeue)

    def _create(self, scope: _Scope, decision: Decision) -> None:
        view = scope.view
        init = decision.action == "init"
        try:
            created = create_machine(
                self.kube, view, scope.cluster, init=init, failure_domain=decision.failure_domain
            )
        except MachineTemplateError as error:
            self._user_error(
                scope, "FailedInitialization" if init else "FailedScaleUp", [str(error)]
            )
            blocked = (str(error),)
            scope.status.decision = Decision("wait", decision.reason, blocked=blocked)
            return
        except ApiError as error:
            reason = "FailedInitialization" if init else "FailedScaleUp"
            self.recorder.warning(
                scope.kcp, reason, f"Failed to create a control plane Machine: {error}"
            )
            raise
        self.expectations.expect_creation(view.uid, created.name)
        where = f" in failure domain {created.failure_domain}" if created.failure_domain else ""
        if init:
            reason, message = (
                "ControlPlaneInitializing",
                f"Created Machine {created.name}{where} to initialize the control plane",
            )
        elif decision.rollout:
            reason, message = (
                "RollingOut",
                f"Created Machine {created.name}{where} to replace outdated Machines",
            )
        else:
            reason, message = (
                "ScalingUp",
                f"Created Machine {created.name}{where} ({decision.reason})",
            )
        self.recorder.normal(scope.kcp, reason, message)
        _log.info("Machine created", machine=created.name, reason=decision.reason)
        scope.requeue_in(self.options.waiting_requeue)

    def _scale_down(self, scope: _Scope, decision: Decision) -> None:
        machine = next(m for m in scope.machines if m.name == decision.machine)
        if machine.node_name is not None:
            if scope.workload is None or scope.etcd is None:
                scope.status.decision = Decision(
                    "wait",
                    decision.reason,
                    machine=machine.name,
                    blocked=("etcd cannot be reached to remove the member first",),
                )
                scope.requeue_in(self.options.waiting_requeue)
                return
            try:
                removal = remove_machine_member(
                    scope.workload, scope.endpoints, scope.etcd, machine, scope.machines
                )
            except QuorumAtRisk as risk:
                scope.status.decision = Decision(
                    "wait", decision.reason, machine=machine.name, blocked=(str(risk),)
                )
                scope.requeue_in(self.options.waiting_requeue)
                return
            except (EtcdError, NotConnected) as error:
                self.recorder.warning(
                    scope.kcp,
                    "FailedScaleDown",
                    f"Failed to remove the etcd member of Machine {machine.name}: {error}",
                )
                scope.requeue_in(self.options.waiting_requeue)
                return
            self._member_removed(
                scope, machine, removal.member, removal.removed, removal.leader_moved_to
            )
        try:
            self.kube.delete(groups.MACHINE, machine.namespace, machine.name, uid=machine.uid)
        except ApiError as error:
            self.recorder.warning(
                scope.kcp,
                "FailedScaleDown",
                f"Failed to delete control plane Machine {machine.name}: {error}",
            )
            raise
        self.expectations.expect_deletion(scope.view.uid, machine.name)
        if decision.rollout:
            detail = scope.up_to_date.get(machine.name)
            why = f": {', '.join(detail.reasons)}" if detail and detail.reasons else ""
            self.recorder.normal(
                scope.kcp, "RollingOut", f"Deleting outdated Machine {machine.name}{why}"
            )
        else:
            self.recorder.normal(
                scope.kcp, "ScalingDown", f"Deleting Machine {machine.name} ({decision.reason})"
            )
        _log.info("Machine deleting", machine=machine.name, reason=decision.reason)
        marked = copy.deepcopy(dict(machine.raw))
        marked.setdefault("metadata", {})["deletionTimestamp"] = scope.now.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        scope.machines = [
            MachineView(marked) if m.name == machine.name else m for m in scope.machines
        ]
        scope.requeue_in(self.options.waiting_requeue)

    # -- deletion ---------------------------------------------------------------------

    def _delete(
        self, kcp: dict[str, Any], cluster: ClusterView | None, cluster_name: str | None
    ) -> Result:
        view = KubeadmControlPlaneView(kcp)
        now = self.clock()
        all_machines = (
            [
                MachineView(m)
                for m in self.cache.cluster_machines(view.namespace, cluster_name or "")
            ]
            if cluster_name
            else []
        )
        machines = owned_control_plane_machines(view, [m.raw for m in all_machines])
        plan = plan_deletion(machines, all_machines)
        if plan.done:
            remove_finalizer(self.kube, kcp)
            self.expectations.forget(view.uid)
            self._forget_failures(view.uid)
            if cluster is not None:
                with contextlib.suppress(ValueError):
                    self.tracker.evict(ClusterKey.from_object(cluster.raw))
            _log.info("KubeadmControlPlane deleted: finalizer removed")
            return Result()
        for machine in machines:
            if labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION in machine.annotations:
                self._release_hook(machine)
        for name in plan.to_delete:
            machine = next(m for m in machines if m.name == name)
            try:
                self.kube.delete(groups.MACHINE, machine.namespace, name, uid=machine.uid)
            except ApiError as error:
                self.recorder.warning(
                    kcp, "FailedDelete", f"Failed to delete control plane Machine {name}: {error}"
                )
                raise
            _log.info("Deleting Machine (KubeadmControlPlane deleted)", machine=name)
        if plan.to_delete:
            self.recorder.normal(
                kcp, "Deleting", f"Deleting control plane Machines {', '.join(plan.to_delete)}"
            )
        self._write_status(
            StatusInputs(
                kcp=view,
                cluster_name=cluster_name or "",
                machines=machines,
                initialized=view.control_plane_initialized,
                deleting_reason=plan.reason,
                deleting_message=plan.message,
            ),
            now,
        )
        return Result(requeue_after=self.options.waiting_requeue)

    # -- bookkeeping ------------------------------------------------------------------

    def _user_error(self, scope: _Scope, reason: str, problems: Sequence[str]) -> None:
        scope.user_errors.extend(problems)
        self.recorder.warning(scope.kcp, reason, "; ".join(problems))
        _log.warning("User error", reason=reason, problems=list(problems))

    def _forget_failures(self, uid: str) -> None:
        with self._failures_lock:
            self._failures.pop(uid, None)

    def _result(self, scope: _Scope) -> Result:
        uid = scope.view.uid
        if scope.user_errors:
            with self._failures_lock:
                failures = self._failures.get(uid, 0) + 1
                self._failures[uid] = failures
            delay = min(
                self.options.error_backoff_max,
                self.options.error_backoff_initial * 2 ** (failures - 1),
            )
            scope.requeue_in(delay)
        else:
            self._forget_failures(uid)
        if scope.requeue is None:
            healthy = scope.health is not None and (
                scope.health.etcd_cluster.is_true and scope.health.components.is_true
            )
            if not scope.status.initialized:
                scope.requeue_in(self.options.not_initialized_requeue)
            elif not healthy:
                scope.requeue_in(self.options.unhealthy_requeue)
            else:
                scope.requeue_in(self.options.health_requeue)
        return Result(requeue_after=scope.requeue)

    def _write_status(
        self, inputs: StatusInputs, now: datetime, *, paused_only: bool = False
    ) -> None:
        fields, conditions = compute_status(inputs)
        if paused_only:
            conditions = [x for x in conditions if x.type == c.PAUSED]
            fields = {}
        try:
            write_conditions(
                self.kube,
                groups.KUBEADM_CONTROL_PLANE,
                inputs.kcp.raw,
                conditions,
                now=now,
                fields=fields,
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
