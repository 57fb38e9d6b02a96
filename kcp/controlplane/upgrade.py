"""What Cluster API's KCP changes inside the workload cluster when the control plane changes.

Before each step of a rollout, once the control plane is initialized: the
ClusterRoleBindings newer kubeadm versions add (`kubeadm:cluster-admins`,
`kubeadm:apiserver-kubelet-client`, for targets below Kubernetes 1.38), and
`kube-system/kubeadm-config` brought to the KCP's version and
ClusterConfiguration (`kcp.controlplane.cluster_configuration`) — a joining
Machine reads it, so when it cannot be written no Machine is created or
removed and `RollingOut` says why.

Once nothing rolls out or scales: the kube-proxy DaemonSet and the CoreDNS
Deployment images (`kcp.controlplane.addons`), unless the KCP carries
`controlplane.cluster.x-k8s.io/skip-kube-proxy` / `skip-coredns`. CoreDNS's
image change is recorded in `kubeadm-config`'s `dns` section; its Corefile is
left as it is (Cluster API migrates it with the corefile-migration library;
the Corefile kubeadm installs has needed no change since CoreDNS 1.8).

`kubelet-config` is not touched: since Kubernetes 1.24 it is not per version,
and Cluster API v1.13 leaves it alone. Cluster API re-reads the add-ons every
reconcile; kcp re-reads them when the KCP's spec or skip annotations change
and otherwise every `addon_check_interval`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from kcp.api import conditions as c
from kcp.api import labels
from kcp.api.groups import CONFIG_MAP
from kcp.controlplane.addons import AddonError, coredns_update, kube_proxy_image
from kcp.controlplane.cluster_configuration import (
    CLUSTER_CONFIGURATION_KEY,
    ClusterConfigurationError,
    dump_cluster_configuration,
    is_defined,
    load_cluster_configuration,
    updated_cluster_configuration,
)
from kcp.controlplane.condition import Condition
from kcp.controlplane.scope import Scope, Services, Step
from kcp.controlplane.versions import parse_version
from kcp.controlplane.workload import KUBEADM_CONFIG_MAP, NotConnected, WorkloadCluster
from kcp.rest import ApiError, Kube, Resource, Unreachable
from kcp.runtime.logging import get_logger
from kcp.tracker.identity import ClusterKey

__all__ = ["CLUSTER_ROLE_BINDING", "DAEMON_SET", "DEPLOYMENT", "WorkloadUpgrade"]

_log = get_logger("kcp.controlplane.reconciler")

DEPLOYMENT = Resource("apps", "v1", "Deployment", "deployments")
DAEMON_SET = Resource("apps", "v1", "DaemonSet", "daemonsets")
CLUSTER_ROLE_BINDING = Resource(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    namespaced=False,
)
KUBE_SYSTEM = "kube-system"
KUBE_PROXY = "kube-proxy"
COREDNS = "coredns"
_COREFILE = "Corefile"
_COREFILE_BACKUP = "Corefile-backup"
_COREDNS_VOLUME = "config-volume"
_PERMISSIONS_UNTIL = (1, 38, 0)
_KUBEADM_BINDINGS = (
    # (name, ClusterRole, subject kind, subject name): what kubeadm 1.29 and 1.37 added.
    ("kubeadm:cluster-admins", "cluster-admin", "Group", "kubeadm:cluster-admins"),
    (
        "kubeadm:apiserver-kubelet-client",
        "system:kubelet-api-admin",
        "User",
        "kube-apiserver-kubelet-client",
    ),
)
_CONFLICT_RETRIES = 3
NETWORK_ERRORS_AND_API: tuple[type[BaseException], ...] = (ApiError, Unreachable)


class _Blocked(Exception):
    """A rollout step must wait; the message says why and what to fix."""

    def __init__(self, message: str, *, user_error: bool) -> None:
        super().__init__(message)
        self.user_error = user_error


class WorkloadUpgrade(Step):
    """The workload-side steps of upgrades; one instance serves every worker."""

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._lock = threading.Lock()
        self._permissions: dict[str, str] = {}
        """KCP uid -> the version kubeadm's RBAC was last ensured for."""
        self._addons: dict[str, tuple[tuple[Any, ...], float]] = {}
        """KCP uid -> (what the add-ons were found up to date for, when)."""

    def forget(self, uid: str) -> None:
        with self._lock:
            self._permissions.pop(uid, None)
            self._addons.pop(uid, None)

    # -- before a rollout step ----------------------------------------------------------

    def prepare_rollout(self, scope: Scope) -> bool:
        """kubeadm's RBAC and `kubeadm-config` at the KCP's spec; False: the step must wait.

        When it must wait, `RollingOut` says why, a Warning Event tells the user
        when it is theirs to fix or an error, and the reconcile is requeued.
        """
        view = scope.view
        where = self._where(scope)
        try:
            api = self._api(scope)
            self._ensure_permissions(scope, api)
            self._update_kubeadm_config(
                scope, api, kubeadm_config_spec=view.kubeadm_config_spec, dns=None
            )
        except NotConnected as error:
            scope.requeue_in(error.retry_after)
            self._blocked(scope, f"waiting to reach the workload cluster {where}: {error}")
            return False
        except ClusterConfigurationError as error:
            message = (
                f"kube-system/{KUBEADM_CONFIG_MAP} in the workload cluster {where} cannot be "
                f"brought to the KubeadmControlPlane's spec: {error}; restore it (`kubeadm init "
                "phase upload-config kubeadm` on a control-plane node writes it again)"
            )
            self._user_error(scope, "FailedRollout", [message])
            self._blocked(scope, message)
            return False
        except NETWORK_ERRORS_AND_API as error:
            message = (
                f"could not update kube-system/{KUBEADM_CONFIG_MAP} or kubeadm's "
                f"ClusterRoleBindings in the workload cluster {where}: {error}"
            )
            self.recorder.warning(scope.kcp, "FailedRollout", message)
            scope.requeue_in(self.options.waiting_requeue)
            self._blocked(scope, message)
            return False
        return True

    def _blocked(self, scope: Scope, why: str) -> None:
        outdated = sum(
            1
            for m in scope.machines
            if not m.is_deleting
            and m.name in scope.up_to_date
            and not scope.up_to_date[m.name].up_to_date
        )
        replicas = "replica" if outdated == 1 else "replicas"
        scope.extra = (
            *scope.extra,
            Condition.true(
                c.ROLLING_OUT,
                c.ROLLING_OUT_REASON,
                f"Rolling out {outdated} not up-to-date {replicas} is blocked because:\n* {why}",
            ),
        )

    def _ensure_permissions(self, scope: Scope, api: Kube) -> None:
        """Create the ClusterRoleBindings kubeadm added in later versions, where missing."""
        view = scope.view
        target = parse_version(view.version)
        if target is None or target.core >= _PERMISSIONS_UNTIL:
            return
        with self._lock:
            if self._permissions.get(view.uid) == view.version:
                return
        for name, role, kind, subject in _KUBEADM_BINDINGS:
            if api.get(CLUSTER_ROLE_BINDING, None, name) is not None:
                continue
            body = {
                "apiVersion": CLUSTER_ROLE_BINDING.api_version,
                "kind": CLUSTER_ROLE_BINDING.kind,
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}
                ],
            }
            try:
                api.create(CLUSTER_ROLE_BINDING, None, body)
            except ApiError as error:
                if error.status != 409:
                    raise
                continue
            _log.info("Created kubeadm's ClusterRoleBinding in the workload", binding=name)
        with self._lock:
            self._permissions[view.uid] = view.version

    def _update_kubeadm_config(
        self,
        scope: Scope,
        api: Kube,
        *,
        kubeadm_config_spec: Mapping[str, Any] | None,
        dns: Mapping[str, Any] | None,
    ) -> None:
        """Write `kubeadm-config` when it differs from the KCP (re-read on a lost race)."""
        version = scope.view.version
        for attempt in range(_CONFLICT_RETRIES):
            config_map = api.get(CONFIG_MAP, KUBE_SYSTEM, KUBEADM_CONFIG_MAP)
            if config_map is None:
                raise ClusterConfigurationError("it does not exist")
            current = load_cluster_configuration(config_map.get("data"))
            updated = updated_cluster_configuration(
                current, version=version, kubeadm_config_spec=kubeadm_config_spec, dns=dns
            )
            if updated == current:
                return
            patch = {
                "metadata": {
                    "resourceVersion": (config_map.get("metadata") or {}).get("resourceVersion")
                },
                "data": {CLUSTER_CONFIGURATION_KEY: dump_cluster_configuration(updated)},
            }
            try:
                api.merge_patch(CONFIG_MAP, KUBE_SYSTEM, KUBEADM_CONFIG_MAP, patch)
            except ApiError as error:
                if error.conflict and attempt + 1 < _CONFLICT_RETRIES:
                    continue
                raise
            _log.info(
                "Updated kubeadm-config in the workload",
                kubernetes_version=updated.get("kubernetesVersion"),
            )
            self.recorder.normal(
                scope.kcp,
                "KubeadmConfigUpdated",
                f"Updated kube-system/{KUBEADM_CONFIG_MAP} in the workload cluster "
                f"{self._where(scope)}: kubernetesVersion {updated.get('kubernetesVersion')}",
            )
            return

    # -- once nothing rolls out ---------------------------------------------------------

    def update_addons(self, scope: Scope) -> None:
        """Bring kube-proxy and CoreDNS to the KCP (skip annotations honoured)."""
        view = scope.view
        annotations = view.annotations
        skip_proxy = labels.SKIP_KUBE_PROXY_ANNOTATION in annotations
        skip_dns = labels.SKIP_COREDNS_ANNOTATION in annotations
        fingerprint = (view.generation, view.version, skip_proxy, skip_dns)
        now = time.monotonic()
        with self._lock:
            seen = self._addons.get(view.uid)
        if (
            seen is not None
            and seen[0] == fingerprint
            and now - seen[1] < self.options.addon_check_interval
        ):
            return
        where = self._where(scope)
        try:
            api = self._api(scope)
            if not skip_proxy:
                self._update_kube_proxy(scope, api)
            if not skip_dns:
                self._update_coredns(scope, api)
        except NotConnected as error:
            scope.requeue_in(error.retry_after)
            return
        except AddonError as error:
            self._user_error(
                scope, "FailedAddonUpdate", [f"In the workload cluster {where}: {error}"]
            )
            return
        except ClusterConfigurationError as error:
            message = (
                f"kube-system/{KUBEADM_CONFIG_MAP} in the workload cluster {where} cannot "
                f"record the new CoreDNS image: {error}; restore it (`kubeadm init phase "
                "upload-config kubeadm` on a control-plane node writes it again)"
            )
            self._user_error(scope, "FailedAddonUpdate", [message])
            return
        except NETWORK_ERRORS_AND_API as error:
            self.recorder.warning(
                scope.kcp,
                "FailedAddonUpdate",
                f"Could not update kube-proxy or CoreDNS in the workload cluster {where}: {error}",
            )
            scope.requeue_in(self.options.unhealthy_requeue)
            return
        with self._lock:
            self._addons[view.uid] = (fingerprint, now)

    def _update_kube_proxy(self, scope: Scope, api: Kube) -> None:
        daemon_set = api.get(DAEMON_SET, KUBE_SYSTEM, KUBE_PROXY)
        container = _container(daemon_set, KUBE_PROXY)
        if daemon_set is None or container is None:
            return  # not installed (e.g. kubeadm's addon/kube-proxy phase skipped)
        image = str(container.get("image") or "")
        wanted = kube_proxy_image(
            image, version=scope.view.version, image_repository=_image_repository(scope)
        )
        if wanted == image:
            return
        self._patch_image(api, DAEMON_SET, daemon_set, KUBE_PROXY, wanted)
        _log.info("Updated the kube-proxy image in the workload", image=wanted)
        self.recorder.normal(
            scope.kcp,
            "KubeProxyUpdated",
            f"Updated the kube-proxy DaemonSet in the workload cluster {self._where(scope)} "
            f"from {image} to {wanted}",
        )

    def _update_coredns(self, scope: Scope, api: Kube) -> None:
        cluster_configuration = scope.view.kubeadm_config_spec.get("clusterConfiguration")
        if not isinstance(cluster_configuration, Mapping) or not is_defined(cluster_configuration):
            return
        config_map = api.get(CONFIG_MAP, KUBE_SYSTEM, COREDNS)
        if config_map is None:
            return
        if _COREFILE not in (config_map.get("data") or {}):
            raise AddonError(
                f"the kube-system/{COREDNS} ConfigMap has no {_COREFILE} key; restore the "
                "CoreDNS configuration, or annotate the KubeadmControlPlane with "
                f"{labels.SKIP_COREDNS_ANNOTATION} to manage CoreDNS yourself"
            )
        deployment = api.get(DEPLOYMENT, KUBE_SYSTEM, COREDNS)
        if deployment is None:
            return
        container = _container(deployment, COREDNS)
        if container is None:
            raise AddonError(
                f"the kube-system/{COREDNS} Deployment has no container named {COREDNS}; "
                f"annotate the KubeadmControlPlane with {labels.SKIP_COREDNS_ANNOTATION} to "
                "manage CoreDNS yourself"
            )
        dns = cluster_configuration.get("dns")
        dns = dns if isinstance(dns, Mapping) else {}
        update = coredns_update(
            str(container.get("image") or ""),
            dns=dns,
            image_repository=_image_repository(scope),
        )
        if not update.needed:
            return
        self._update_kubeadm_config(scope, api, kubeadm_config_spec=None, dns=dns)
        self._patch_image(api, DEPLOYMENT, deployment, COREDNS, update.to_image)
        _log.info("Updated the CoreDNS image in the workload", image=update.to_image)
        self.recorder.normal(
            scope.kcp,
            "CoreDNSUpdated",
            f"Updated the CoreDNS Deployment in the workload cluster {self._where(scope)} from "
            f"{update.from_image} to {update.to_image}",
        )

    def _patch_image(
        self, api: Kube, resource: Resource, obj: Mapping[str, Any], container: str, image: str
    ) -> None:
        """Set one container's image (the whole list, as a merge patch replaces lists); for
        CoreDNS also point its volume back at the Corefile, as Cluster API does after a
        migration."""
        pod_spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = [
            {**c, "image": image} if c.get("name") == container else c
            for c in pod_spec.get("containers") or []
        ]
        template_spec: dict[str, Any] = {"containers": containers}
        if resource is DEPLOYMENT:
            volumes = _corefile_volumes(pod_spec.get("volumes") or [])
            if volumes is not None:
                template_spec["volumes"] = volumes
        metadata = obj.get("metadata") or {}
        api.merge_patch(
            resource,
            KUBE_SYSTEM,
            str(metadata.get("name")),
            {
                "metadata": {"resourceVersion": metadata.get("resourceVersion")},
                "spec": {"template": {"spec": template_spec}},
            },
        )

    # -- plumbing -----------------------------------------------------------------------

    def _api(self, scope: Scope) -> Kube:
        if scope.workload is None:
            cluster_key = ClusterKey.from_object(scope.cluster.raw)
            scope.workload = (
                WorkloadCluster(self.tracker, cluster_key, api=self.workload_api)
                if self.workload_api is not None
                else WorkloadCluster(self.tracker, cluster_key)
            )
        return scope.workload.api()

    @staticmethod
    def _where(scope: Scope) -> str:
        return f"{scope.view.namespace}/{scope.cluster.name}"


def _container(obj: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    if obj is None:
        return None
    pod_spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod_spec.get("containers") or []:
        if isinstance(container, Mapping) and container.get("name") == name:
            return container
    return None


def _image_repository(scope: Scope) -> str:
    cluster_configuration = scope.view.kubeadm_config_spec.get("clusterConfiguration")
    if not isinstance(cluster_configuration, Mapping):
        return ""
    return str(cluster_configuration.get("imageRepository") or "")


def _corefile_volumes(volumes: list[Any]) -> list[Any] | None:
    """The volumes with CoreDNS's config volume reading `Corefile` again (None: unchanged)."""
    changed = False
    result: list[Any] = []
    for volume in volumes:
        config_map = volume.get("configMap") if isinstance(volume, Mapping) else None
        if (
            volume.get("name") == _COREDNS_VOLUME
            and isinstance(config_map, Mapping)
            and config_map.get("name") == COREDNS
        ):
            items = [
                {**item, "key": _COREFILE} if item.get("key") == _COREFILE_BACKUP else item
                for item in config_map.get("items") or []
            ]
            if items != list(config_map.get("items") or []):
                changed = True
                result.append({**volume, "configMap": {**config_map, "items": items}})
                continue
        result.append(volume)
    return result if changed else None
