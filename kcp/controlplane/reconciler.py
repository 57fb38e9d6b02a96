"""The KubeadmControlPlane reconciler: the one-method seam `reconcile(key) -> Result`.

One reconcile reads the KubeadmControlPlane, its Cluster and Machines from the
informer caches, then runs the phases in Cluster API's order — certificates,
kubeconfig, health, etcd member bookkeeping, remediation, one scaling or
rollout step — and ends by writing the status. Each phase records what it
learned; errors a user can cause become a
condition, an Event and a requeue with backoff, never an exception loop: the backoff
comes from the failures the controller's work queue keeps for the key. A
workload cluster the tracker cannot serve right now makes the reconcile return
at once with a requeue: a worker never waits on a cluster.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView, MachineView
from kcp.certs import CertificateError
from kcp.controlplane.adoption import ADOPTION_FAILED_REASON, Adoption
from kcp.controlplane.certificates import load_cluster_ca, reconcile_certificates
from kcp.controlplane.condition import Condition
from kcp.controlplane.echoes import OwnWrites
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.expectations import Expectations
from kcp.controlplane.expiry import recorded_expiry
from kcp.controlplane.inplace import InPlace
from kcp.controlplane.inspection import Inspection
from kcp.controlplane.kubeconfig import reconcile_kubeconfig
from kcp.controlplane.lifecycle import is_paused, owned_control_plane_machines, plan_deletion
from kcp.controlplane.membership import MemberBookkeeping
from kcp.controlplane.operations import Operations
from kcp.controlplane.orphans import Orphans
from kcp.controlplane.remediator import Remediator
from kcp.controlplane.rollout import infra_cloned_from, machine_up_to_date
from kcp.controlplane.scaling import Action, decide
from kcp.controlplane.scope import Cache, ReconcilerOptions, Scope, Services, Step
from kcp.controlplane.secrets import SecretStore
from kcp.controlplane.status import compute_status, write_conditions
from kcp.controlplane.upgrade import WorkloadUpgrade
from kcp.controlplane.validation import validate_spec
from kcp.controlplane.versions import version_change_problem
from kcp.controlplane.workload import TrackerLike
from kcp.rest import ApiError, Kube
from kcp.runtime.controller import ObjectKey, Result
from kcp.runtime.finalizers import add_finalizer, remove_finalizer
from kcp.runtime.logging import get_logger
from kcp.runtime.ratelimit import ItemExponentialRateLimiter
from kcp.tracker.identity import ClusterKey

__all__ = ["Cache", "KubeadmControlPlaneReconciler", "ReconcilerOptions"]

_log = get_logger("kcp.controlplane.reconciler")


class KubeadmControlPlaneReconciler(Step):
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
        failures: ItemExponentialRateLimiter | None = None,
    ) -> None:
        """`failures` is the per-item history of the controller's queue (its own otherwise)."""
        settings = options or ReconcilerOptions()
        super().__init__(
            Services(
                kube=kube,
                cache=cache,
                tracker=tracker,
                recorder=recorder or EventRecorder(kube),
                options=settings,
                secrets=SecretStore(kube, cache.secret),
                expectations=Expectations(settings.expectation_timeout),
                workload_api=workload_api,
            )
        )
        self.clock = clock or (lambda: datetime.now(UTC))
        self.inspection = Inspection(self.services)
        self.in_place = InPlace(self.services)
        self.adoption = Adoption(self.services)
        self.orphans = Orphans(self.services)
        self.operations = Operations(self.services, create_interrupted=self.orphans.suspect)
        self.bookkeeping = MemberBookkeeping(self.services)
        self.remediator = Remediator(self.services)
        self.upgrade = WorkloadUpgrade(self.services)
        self.own_writes = OwnWrites()
        """Our status writes, so that their watch events do not enqueue again."""
        self._user_error_backoff = (failures or ItemExponentialRateLimiter()).with_delays(
            settings.error_backoff_initial, settings.error_backoff_max
        )

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
        with self.own_writes.writing(kcp):
            patched = add_finalizer(
                self.kube, groups.KUBEADM_CONTROL_PLANE, kcp, labels.KUBEADM_CONTROL_PLANE_FINALIZER
            )
            if patched is not None:
                self.own_writes.record(patched)
                kcp = patched
        now = self.clock()
        if is_paused(view, cluster):
            paused = Scope(
                kcp=kcp,
                cluster=cluster,
                machines=self._machines(KubeadmControlPlaneView(kcp), cluster.name),
                now=now,
                initialized=view.control_plane_initialized,
                paused=True,
            )
            self._write_status(paused, paused_only=True)
            return Result()
        adoption = self.adoption.adopt(kcp, cluster.name)
        if adoption.pending:
            # Decide nothing on a Machine set the cache does not show owned yet.
            requeue = self.options.cache_requeue if adoption.adopted else None
            return Result(requeue_after=requeue or self.options.waiting_requeue)
        return self._reconcile(kcp, cluster, now, adoption.refused)

    # -- normal reconcile -------------------------------------------------------------

    def _machines(self, kcp: KubeadmControlPlaneView, cluster_name: str) -> list[MachineView]:
        return owned_control_plane_machines(
            kcp, self.cache.cluster_machines(kcp.namespace, cluster_name)
        )

    def _reconcile(
        self,
        kcp: dict[str, Any],
        cluster: ClusterView,
        now: datetime,
        adoption_refused: tuple[str, ...] = (),
    ) -> Result:
        view = KubeadmControlPlaneView(kcp)
        machines = self._machines(view, cluster.name)
        waiting = self.expectations.pending(view.uid, {m.name: m.raw for m in machines})
        if waiting:
            _log.debug("Waiting for the cache", pending=waiting)
            return Result(requeue_after=self.options.cache_requeue)
        scope = Scope(
            kcp=kcp,
            cluster=cluster,
            machines=machines,
            now=now,
            initialized=view.control_plane_initialized,
            adoption_refused=adoption_refused,
        )
        try:
            self._phases(scope)
        finally:
            self._write_status(scope)
        return self._result(scope)

    def _phases(self, scope: Scope) -> None:
        view = scope.view
        problems = validate_spec(view, max_replicas=self.options.max_replicas)
        # No webhook refuses a version skipping a minor (or going back): nothing rolls out.
        version_problem = view.version and version_change_problem(
            view.version, (m.version for m in scope.machines)
        )
        if version_problem:
            problems.append(version_problem)
        if problems:
            self._user_error(scope, "InvalidSpec", problems)
            scope.extra = (
                Condition.unknown(c.SCALING_UP, "InvalidSpec", "\n".join(problems)),
                Condition.unknown(c.SCALING_DOWN, "InvalidSpec", "\n".join(problems)),
            )
            if version_problem:
                scope.extra += (Condition.unknown(c.ROLLING_OUT, "InvalidSpec", version_problem),)
        if scope.adoption_refused:
            self._refuse_adoption(scope)
        cluster = scope.cluster
        # The Machine cache has caught up with kcp's own writes (expectations): what a
        # create_machine interrupted by a crash left behind can be told from the rest.
        self.orphans.cleanup(scope)
        # Certificates come first: an infrastructure provider may need the cluster CA (the
        # local simulator's load balancer does) and they depend on nothing else.
        certificates = reconcile_certificates(
            self.secrets,
            scope.kcp,
            cluster.name,
            may_generate=not scope.machines and not view.control_plane_initialized,
            now=scope.now,  # the reconcile's clock, so what it issues next is consistent
        )
        scope.certificates = certificates.condition
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
        # Labels, annotations, timeouts, readiness gates: to existing Machines, no rollout.
        self.in_place.sync(scope)
        self._compare(scope)
        self.inspection.inspect(scope)
        if self.bookkeeping.reconcile(scope):
            return  # etcd's member list changed: decide on what the next reconcile reads
        if problems or scope.adoption_refused:
            return
        if self.remediator.reconcile(scope):
            return  # an unhealthy Machine is being deleted: its replacement comes next
        decision = decide(
            desired=view.replicas,
            max_surge=view.max_surge,
            machines=self.operations.states(scope),
            failure_domains=cluster.control_plane_failure_domains,
            certificates_available=certificates.available,
            replacement_preflight=self.remediator.replacement_preflight(scope),
        )
        scope.decision = decision
        # A joining Machine reads kubeadm-config: bring it to the spec before each rollout step.
        if decision.rollout and scope.initialized and not self.upgrade.prepare_rollout(scope):
            return
        self.operations.act(scope, decision)
        if decision.action.creates_machine and scope.decision is decision:
            self.remediator.replacement_created(scope)
        if decision.action == Action.NONE and scope.initialized:
            self.upgrade.update_addons(scope)
            self.inspection.record_certificate_expiries(scope)

    def _refuse_adoption(self, scope: Scope) -> None:
        """A Machine of the cluster kcp cannot adopt: no Machine is created or deleted, and
        the scaling and rollout conditions say why."""
        refused = list(scope.adoption_refused)
        self._user_error(scope, ADOPTION_FAILED_REASON, refused)
        message = "\n".join(refused)
        taken = {x.type for x in scope.extra}
        scope.extra += tuple(
            Condition.unknown(kind, ADOPTION_FAILED_REASON, message)
            for kind in (c.SCALING_UP, c.SCALING_DOWN, c.ROLLING_OUT)
            if kind not in taken
        )

    def _waiting_health(self, scope: Scope, message: str) -> None:
        scope.health_conditions = (
            Condition.unknown(c.ETCD_CLUSTER_HEALTHY, c.INSPECTION_FAILED_REASON, message),
            Condition.unknown(
                c.CONTROL_PLANE_COMPONENTS_HEALTHY, c.INSPECTION_FAILED_REASON, message
            ),
        )
        scope.requeue_in(self.options.not_initialized_requeue)

    def _kubeconfig(self, scope: Scope, endpoint: tuple[str, int]) -> None:
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

    def _compare(self, scope: Scope) -> None:
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
            remove_finalizer(
                self.kube, groups.KUBEADM_CONTROL_PLANE, kcp, labels.KUBEADM_CONTROL_PLANE_FINALIZER
            )
            self.expectations.forget(view.uid)
            self.orphans.forget(view.uid)
            self.upgrade.forget(view.uid)
            self.in_place.forget(view.uid)
            if cluster is not None:
                with contextlib.suppress(ValueError):
                    self.tracker.evict(ClusterKey.from_object(cluster.raw))
            _log.info("KubeadmControlPlane deleted: finalizer removed")
            return Result()
        for machine in machines:
            # The whole cluster goes: no member to keep, no leadership to hand over.
            self.bookkeeping.release_hook(machine)
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
        deleting = Scope(
            kcp=kcp,
            cluster=cluster or _gone(view.namespace, cluster_name),
            machines=machines,
            now=now,
            initialized=view.control_plane_initialized,
            deleting_reason=plan.reason,
            deleting_message=plan.message,
        )
        self._write_status(deleting)
        return Result(requeue_after=self.options.waiting_requeue)

    # -- bookkeeping ------------------------------------------------------------------

    def _result(self, scope: Scope) -> Result:
        if scope.user_errors:
            # A failure like an exception, on a slower curve: one more in the key's history,
            # which the controller keeps (`backed_off`) until a reconcile succeeds.
            key = ObjectKey(scope.view.namespace, scope.view.name)
            scope.requeue_in(self._user_error_backoff.when(key))
            return Result(requeue_after=scope.requeue, backed_off=True)
        if scope.requeue is None:
            healthy = scope.health is not None and (
                scope.health.etcd_cluster.is_true and scope.health.components.is_true
            )
            if not scope.initialized:
                scope.requeue_in(self.options.not_initialized_requeue)
            elif not healthy:
                scope.requeue_in(self.options.unhealthy_requeue)
            else:
                jitter = random.uniform(0.0, self.options.health_requeue_jitter)
                scope.requeue_in(self.options.health_requeue * (1.0 + jitter))
        return Result(requeue_after=scope.requeue)

    def _status_base(self, view: KubeadmControlPlaneView) -> Mapping[str, Any]:
        """The object a status write starts from: the cache's copy now, not the one the
        reconcile started from (our previous write may have reached the cache meanwhile), as
        long as the spec is the one reconciled; or our last write, if the cache does not show
        it yet. A base that is stale all the same fails the write (409), which is redone."""
        now = self.cache.kubeadm_control_plane(view.namespace, view.name)
        current: Mapping[str, Any] = view.raw
        if now is not None:
            metadata = now.get("metadata") or {}
            if metadata.get("uid") == view.uid and metadata.get("generation") == view.generation:
                current = now
        return self.own_writes.latest(current)

    def _write_status(self, scope: Scope, *, paused_only: bool = False) -> None:
        fields, conditions = compute_status(scope)
        if paused_only:
            conditions = [x for x in conditions if x.type == c.PAUSED]
            fields = {}
        view = scope.view
        try:
            with self.own_writes.writing(scope.kcp):
                write_conditions(
                    self.kube,
                    groups.KUBEADM_CONTROL_PLANE,
                    self._status_base(view),
                    conditions,
                    now=scope.now,
                    fields=fields,
                    on_written=self.own_writes.record,
                    cached=lambda: self.cache.kubeadm_control_plane(view.namespace, view.name),
                )
        except ApiError as error:
            if error.not_found:
                return
            raise


def _gone(namespace: str, name: str | None) -> ClusterView:
    """The Cluster a control plane being deleted belonged to, once the Cluster is gone."""
    return ClusterView({"metadata": {"namespace": namespace, "name": name or ""}})
