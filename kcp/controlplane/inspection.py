"""Inspecting a workload cluster through the tracker: Nodes, control-plane Pods, etcd.

What it learns becomes the per-Machine health conditions (written to the
Machines) and the control plane's `EtcdClusterHealthy` and
`ControlPlaneComponentsHealthy`. A cluster the tracker cannot serve yet costs
no wait: the reconcile is requeued when the tracker says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kcp.api import conditions as c
from kcp.api import groups
from kcp.api.objects import MachineView
from kcp.certs import CertificateError
from kcp.controlplane.certificates import load_cluster_ca
from kcp.controlplane.condition import Condition
from kcp.controlplane.expiry import (
    apiserver_endpoint,
    expiry_annotation,
    recorded_expiry,
    serving_certificate_expiry,
)
from kcp.controlplane.health import machine_health
from kcp.controlplane.scope import Scope, Step
from kcp.controlplane.status import write_conditions
from kcp.controlplane.workload import NotConnected, WorkloadCluster, machine_etcd_endpoints
from kcp.etcd import EtcdError
from kcp.rest import ApiError, Unreachable
from kcp.runtime.logging import get_logger
from kcp.tracker.errors import ClusterSecretError
from kcp.tracker.identity import ClusterKey

__all__ = ["SHARED_READ_SECONDS", "Inspection"]

SHARED_READ_SECONDS = 2.0
"""Reconciles of one cluster this close together share its Node and Pod lists
(`kcp.tracker.recent`): a rollout woke one control plane twice a second, and each listed
both from its workload API server where Cluster API's KCP reads a watch cache."""

_log = get_logger("kcp.controlplane.reconciler")

NETWORK_ERRORS_AND_API: tuple[type[BaseException], ...] = (ApiError, Unreachable)


class Inspection(Step):
    """Health of one control plane, read through the tracker."""

    def inspect(self, scope: Scope) -> None:
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
            nodes = workload.nodes(max_age=SHARED_READ_SECONDS)
            pods = workload.control_plane_pods(max_age=SHARED_READ_SECONDS)
            workload.answered()
        except NotConnected as error:
            nodes = None
            workload_error, workload_reason = (
                self._not_connected(scope, error),
                c.CONNECTION_DOWN_REASON,
            )
        except NETWORK_ERRORS_AND_API as error:
            nodes = None
            workload_error = f"{type(error).__name__}: {error}"
            scope.requeue_in(self.options.unhealthy_requeue)
        etcd_error: str | None = None
        etcd_reason = c.INSPECTION_FAILED_REASON
        by_machine = machine_etcd_endpoints(pods, scope.machines, access=self.options.etcd_access)
        scope.endpoints = tuple(dict.fromkeys(e for es in by_machine.values() for e in es))
        if not scope.endpoints:
            etcd_error = "no etcd endpoint is known yet (no Machine reports an address)"
        else:
            try:
                scope.etcd = workload.etcd_status(scope.endpoints)
                if scope.etcd.refusals:
                    # Stable messages: a refusal that lasts adds to one Event's count.
                    self.recorder.warning(
                        scope.kcp, "EtcdPortForwardRefused", "; ".join(scope.etcd.refusals)
                    )
            except NotConnected as error:
                etcd_error, etcd_reason = (
                    self._not_connected(scope, error),
                    c.CONNECTION_DOWN_REASON,
                )
            except EtcdError as error:
                etcd_error = str(error)
                scope.requeue_in(self.options.unhealthy_requeue)
        scope.pods = pods
        scope.nodes_known = nodes is not None
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
        if nodes is not None and not scope.initialized:
            scope.initialized = self._kubeadm_init_completed(scope, workload)
        self._write_machine_conditions(scope)

    def _kubeadm_init_completed(self, scope: Scope, workload: WorkloadCluster) -> bool:
        """Whether the control plane is initialized, as Cluster API's KCP decides it.

        The `kubeadm-config` ConfigMap `kubeadm init` uploads says the first API
        server runs and init completed. Never the Cluster's own flag: core copies
        that from ours, and CABPK hands out join data only once it is set. Once
        True it stays (the caller starts from the recorded status).
        """
        if len(scope.machines) == 1:
            only = scope.machines[0]
            # Init finishing while its only Machine goes would leave a cluster marked
            # initialized with no Machine left to join.
            if only.is_deleting or (
                c.is_false(only.raw, c.HEALTH_CHECK_SUCCEEDED)
                and c.is_false(only.raw, c.OWNER_REMEDIATED)
            ):
                return False
        try:
            return workload.has_kubeadm_config()
        except NotConnected:
            return False
        except NETWORK_ERRORS_AND_API as error:
            _log.debug("kubeadm-config not read", error=str(error))
            return False

    def _not_connected(self, scope: Scope, error: NotConnected) -> str:
        """Requeue when the tracker says; tell the user when it is theirs to fix or lasts.

        Returns what the health conditions say: the tracker's error, or, for a cluster
        that has failed `unreachable_event_after` checks without ever connecting, an
        instruction naming the kubeconfig Secret to check.
        """
        scope.requeue_in(error.retry_after)
        never_connected = (
            self._never_connected_message(scope) if error.reason == "connecting" else None
        )
        if not scope.reported_not_connected:
            scope.reported_not_connected = True
            if isinstance(error, ClusterSecretError):
                self._user_error(scope, "InvalidClusterSecret", [str(error)])
            elif error.reason == "down":
                # A stable message, so that repeats add to one Event's count.
                self.recorder.warning(
                    scope.kcp,
                    "WorkloadClusterUnreachable",
                    f"The workload cluster {scope.view.namespace}/{scope.cluster.name} does "
                    "not answer kcp's health checks; check its control-plane endpoint, API "
                    "servers and etcd members (details in the EtcdClusterHealthy and "
                    "ControlPlaneComponentsHealthy conditions)",
                )
            elif never_connected is not None:
                self.recorder.warning(scope.kcp, "WorkloadClusterUnreachable", never_connected)
        return never_connected or str(error)

    def _never_connected_message(self, scope: Scope) -> str | None:
        """The instruction for a cluster still `connecting` after too many failed checks."""
        health = self.tracker.health(ClusterKey.from_object(scope.cluster.raw))
        if health is None or health.consecutive_failures < self.options.unreachable_event_after:
            return None
        namespace, cluster = scope.view.namespace, scope.cluster.name
        return (
            f"kcp has not reached the workload cluster {namespace}/{cluster} yet "
            f"({health.last_error}); check that the control-plane endpoint in its kubeconfig "
            f"Secret {namespace}/{cluster}-kubeconfig is right and that an API server answers "
            "there"
        )

    def _write_machine_conditions(self, scope: Scope) -> None:
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
                    self.kube,
                    groups.MACHINE,
                    machine.raw,
                    computed,
                    now=scope.now,
                    cached=self._cached_machine(scope, machine.name),
                )
            except ApiError as error:
                _log.warning(
                    "Machine conditions not written", machine=machine.name, error=str(error)
                )
                continue
            scope.machines[index] = MachineView(written)

    def _cached_machine(self, scope: Scope, name: str) -> Callable[[], Mapping[str, Any] | None]:
        def lookup() -> Mapping[str, Any] | None:
            machines = self.cache.cluster_machines(scope.view.namespace, scope.cluster.name)
            return next(
                (m for m in machines if (m.get("metadata") or {}).get("name") == name), None
            )

        return lookup

    def record_certificate_expiries(self, scope: Scope) -> None:
        """Read, once per Machine, when its API server certificate expires (Cluster API's way)."""
        ca_pem: bytes | None = None
        for machine in scope.machines:
            config_ref = machine.bootstrap_config_ref
            if machine.is_deleting or config_ref is None:
                continue
            config = self.cache.kubeadm_config(machine.namespace, config_ref.name)
            if config is None or recorded_expiry(machine, config) is not None:
                continue
            endpoint = apiserver_endpoint(machine, scope.pods, access=self.options.etcd_access)
            if endpoint is None or scope.workload is None:
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
                expiry = serving_certificate_expiry(
                    endpoint, ca_pem, dialer=scope.workload.dialer()
                )
            except (OSError, ValueError, EtcdError, NotConnected) as error:
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
