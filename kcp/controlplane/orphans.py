"""Deleting what a crashed `create_machine` left behind.

`create_machine` creates the infrastructure machine, then the KubeadmConfig,
then the Machine, all with one name. A controller that dies between the first
and the last step leaves objects no Machine references; nothing else would ever
delete them (the KubeadmControlPlane, which lives on, owns them; only a Machine
would have become their controller). Each reconcile, once the Machine cache has
caught up with kcp's own writes, looks for the KubeadmConfigs (informer cache)
and infrastructure machines (a live list of the kind cloned from
`spec.machineTemplate.spec.infrastructureRef`: once per control plane after kcp
starts, since only a process that stopped mid-create leaves them, and again after
a creation in this process failed part way or an orphan KubeadmConfig turned up)
this control plane owns, controller
or not, that no Machine references, confirms with a live GET that no Machine of
that name exists, and deletes them (Cluster API's MachineSet does the same since
kubernetes-sigs/cluster-api#13812).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from kcp.api import groups, labels
from kcp.controlplane.machines import TEMPLATE_SUFFIX
from kcp.controlplane.scope import Scope, Services, Step
from kcp.controlplane.secrets import has_owner
from kcp.rest import ApiError, Resource, Unreachable
from kcp.runtime.logging import get_logger

__all__ = ["Orphans"]

_log = get_logger("kcp.controlplane.reconciler")

_LIST_ERRORS: tuple[type[BaseException], ...] = (ApiError, Unreachable)
_DISCOVERY_ERRORS: tuple[type[BaseException], ...] = (LookupError, *_LIST_ERRORS)


class Orphans(Step):
    """Finds and deletes a control plane's KubeadmConfigs and infrastructure machines no
    Machine references."""

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._listed: set[str] = set()
        """Control planes whose infrastructure machines were listed since kcp started and
        that no failed creation made suspect again."""
        self._lock = threading.Lock()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._listed.discard(uid)

    def suspect(self, uid: str) -> None:
        """A Machine's creation failed part way: list the infrastructure machines next time."""
        self.forget(uid)

    def cleanup(self, scope: Scope) -> None:
        """Delete the orphans of `scope`'s control plane; call only with a trustworthy cache."""
        view = scope.view
        namespace, uid = view.namespace, view.uid
        referenced: set[tuple[str, str]] = set()
        for raw in self.cache.cluster_machines(namespace, scope.cluster.name):
            spec = raw.get("spec") or {}
            for ref in (
                (spec.get("bootstrap") or {}).get("configRef"),
                spec.get("infrastructureRef"),
            ):
                if isinstance(ref, Mapping) and ref.get("name"):
                    referenced.add((str(ref.get("kind") or ""), str(ref["name"])))
        configs = [
            o
            for o in self.cache.cluster_kubeadm_configs(namespace, scope.cluster.name)
            if self._candidate(o, uid, groups.KUBEADM_CONFIG.kind, referenced)
        ]
        for config in configs:
            self._delete(scope, groups.KUBEADM_CONFIG, config)
        infra = self._infra_resource(scope)
        if infra is None or not self._due(uid, force=bool(configs)):
            return
        try:
            found = self.kube.list(
                infra, namespace, label_selector=f"{labels.CLUSTER_NAME_LABEL}={scope.cluster.name}"
            )
        except _LIST_ERRORS as error:
            _log.warning("Infrastructure machines not listed", kind=infra.kind, error=str(error))
            self.forget(uid)
            return
        for obj in found:
            if self._candidate(obj, uid, infra.kind, referenced):
                self._delete(scope, infra, obj)

    def _due(self, uid: str, *, force: bool) -> bool:
        with self._lock:
            if not force and uid in self._listed:
                return False
            self._listed.add(uid)
            return True

    def _infra_resource(self, scope: Scope) -> Resource | None:
        ref = scope.view.infrastructure_ref
        if ref is None or not ref.kind.endswith(TEMPLATE_SUFFIX) or ref.kind == TEMPLATE_SUFFIX:
            return None  # reported where Machines are created
        try:
            return self.kube.resource_for(ref.api_group, ref.kind[: -len(TEMPLATE_SUFFIX)])
        except _DISCOVERY_ERRORS:
            return None

    @staticmethod
    def _candidate(
        obj: Mapping[str, Any], uid: str, kind: str, referenced: Iterable[tuple[str, str]]
    ) -> bool:
        metadata = obj.get("metadata") or {}
        obj_labels = metadata.get("labels") or {}
        # Owned, not controlled: kcp (like Cluster API) creates them with a plain owner
        # reference, and once a Machine exists it is their controller instead.
        return (
            has_owner(obj, uid)
            and labels.MACHINE_CONTROL_PLANE_LABEL in obj_labels
            and not metadata.get("deletionTimestamp")
            and (kind, str(metadata.get("name") or "")) not in referenced
        )

    def _delete(self, scope: Scope, resource: Resource, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        namespace, name = scope.view.namespace, str(metadata.get("name") or "")
        # The cache may lag: a Machine of the same name (names are shared) keeps it.
        if self.kube.get(groups.MACHINE, namespace, name) is not None:
            return
        try:
            deleted = self.kube.delete(resource, namespace, name, uid=metadata.get("uid") or None)
        except ApiError as error:
            if error.status == 409:
                return  # replaced meanwhile: another incarnation, looked at next time
            raise
        if not deleted:
            return
        why = (
            f"Deleted {resource.kind} {namespace}/{name}: it belongs to this control plane but "
            f"no Machine references it (a Machine {name} was never created, e.g. kcp stopped "
            "while creating it)"
        )
        _log.info("Deleted orphan", kind=resource.kind, name=name)
        self.recorder.normal(scope.kcp, "DeletedOrphan", why)
