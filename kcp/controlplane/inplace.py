"""In-place changes: what the KCP's spec says of existing Machines that needs no rollout.

As Cluster API's KCP (`syncMachines`), every reconcile brings each control-plane
Machine's labels and annotations (those of `spec.machineTemplate.metadata`, with
the control-plane labels forced), node drain / volume detach / node deletion
timeouts, taints and readiness gates to the spec, and the same labels and
annotations to its KubeadmConfig and infrastructure machine — by server-side
apply as kcp's field manager, so that what kcp applied before and the template
no longer has is removed, and what others set stays. None of this makes a
Machine out of date (`kcp.controlplane.rollout` compares neither). A Machine
being deleted only gets its timeouts and taints (a merge patch: its labels must
not change while it goes).

To stay cheap, an object is applied only when what kcp would apply changed since
kcp last applied it (and after a restart once, as Cluster API does), or when
the cache shows it lost some of it; a KubeadmConfig or infrastructure machine
not found is skipped (the next reconcile sees it, or it is gone with its Machine).
An object Cluster API's KCP applied before kcp took over is handed over on kcp's
first apply (`kcp.controlplane.managed_fields`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from kcp.api import groups
from kcp.api.objects import KubeadmControlPlaneView, MachineView
from kcp.controlplane.machines import (
    desired_deletion,
    desired_readiness_gates,
    desired_taints,
    machine_labels,
)
from kcp.controlplane.managed_fields import (
    CLUSTER_API_KCP_MANAGERS,
    MACHINE_IN_PLACE_FIELDS,
    METADATA_FIELDS,
    release_fields,
)
from kcp.controlplane.scope import Scope, Services, Step
from kcp.rest import ApiError
from kcp.runtime.logging import get_logger
from kcp.runtime.transforms import drop_managed_fields

__all__ = [
    "DELETION_TIMEOUTS",
    "InPlace",
    "contains",
    "deleting_machine_patch",
    "machine_apply_config",
    "metadata_apply_config",
]

_log = get_logger("kcp.controlplane.reconciler")

DELETION_TIMEOUTS = (
    "nodeDrainTimeoutSeconds",
    "nodeVolumeDetachTimeoutSeconds",
    "nodeDeletionTimeoutSeconds",
)


def _identity(obj: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            # An apply with the UID fails instead of re-creating an object deleted meanwhile.
            "uid": metadata.get("uid"),
        },
    }


def metadata_apply_config(
    kcp: KubeadmControlPlaneView,
    cluster_name: str,
    obj: Mapping[str, Any],
    *,
    api_version: str,
    kind: str,
) -> dict[str, Any]:
    """What kcp applies to a Machine's KubeadmConfig or infrastructure machine."""
    config = _identity(obj, api_version, kind)
    config["metadata"]["labels"] = machine_labels(kcp, cluster_name)
    config["metadata"]["annotations"] = dict(kcp.machine_template_annotations)
    return config


def machine_apply_config(
    kcp: KubeadmControlPlaneView, cluster_name: str, machine: MachineView
) -> dict[str, Any]:
    """What kcp applies to an existing Machine: the in-place mutable fields only.

    The cloned-from annotations stay as written at creation: they say which
    template the Machine was made from, which is what a rollout compares.
    """
    config = _identity(machine.raw, groups.MACHINE.api_version, groups.MACHINE.kind)
    config["metadata"]["labels"] = machine_labels(kcp, cluster_name)
    config["metadata"]["annotations"] = dict(kcp.machine_template_annotations)
    spec: dict[str, Any] = {"readinessGates": desired_readiness_gates(kcp)}
    deletion, taints = desired_deletion(kcp), desired_taints(kcp)
    if deletion:
        spec["deletion"] = deletion
    if taints:
        spec["taints"] = taints
    config["spec"] = spec
    return config


def deleting_machine_patch(kcp: KubeadmControlPlaneView, machine: MachineView) -> dict[str, Any]:
    """The merge patch bringing a deleting Machine's timeouts and taints to the spec ({}: none)."""
    spec = machine.raw.get("spec") or {}
    current = spec.get("deletion") if isinstance(spec.get("deletion"), Mapping) else {}
    desired = desired_deletion(kcp)
    patch: dict[str, Any] = {}
    deletion = {
        key: desired.get(key)
        for key in DELETION_TIMEOUTS
        if (current or {}).get(key) != desired.get(key)
    }
    if deletion:
        patch["deletion"] = deletion
    taints = desired_taints(kcp)
    if (spec.get("taints") or []) != taints:
        patch["taints"] = taints or None
    return {"spec": patch} if patch else {}


def contains(current: Any, desired: Any) -> bool:
    """Whether `current` already has everything `desired` sets (objects: every key; lists:
    every item), i.e. applying `desired` would add or change nothing."""
    if isinstance(desired, Mapping):
        # An empty object or list sets nothing: the API server drops it when empty anyway.
        return isinstance(current, Mapping) and all(
            contains(current[key], value) if key in current else value in ({}, [])
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(current, list) and all(
            any(contains(item, wanted) for item in current) for wanted in desired
        )
    return bool(current == desired)


def _payload(config: Mapping[str, Any]) -> dict[str, Any]:
    """What an apply config sets, without the object's identity."""
    metadata = config.get("metadata") or {}
    payload: dict[str, Any] = {
        "metadata": {k: metadata[k] for k in ("labels", "annotations") if k in metadata}
    }
    if "spec" in config:
        payload["spec"] = config["spec"]
    return payload


def _fingerprint(config: Mapping[str, Any]) -> str:
    encoded = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


Applied = tuple[str, str]
"""(fingerprint of what was applied, resourceVersion of the object it was applied to; for an
infrastructure machine, its UID)."""


class InPlace(Step):
    """Propagates the in-place mutable fields to a control plane's Machines and their objects."""

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._applied: dict[str, dict[str, Applied]] = {}
        self._lock = threading.Lock()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._applied.pop(uid, None)

    def sync(self, scope: Scope) -> None:
        view = scope.view
        with self._lock:
            before = dict(self._applied.get(view.uid, {}))
        after: dict[str, Applied] = {}
        machines: list[MachineView] = []
        for machine in scope.machines:
            if machine.is_deleting:
                machines.append(self._sync_deleting(scope, machine))
                continue
            machines.append(self._sync_machine(scope, machine, before, after))
            self._sync_config(scope, machine, before, after)
            self._sync_infra(scope, machine, before, after)
        scope.machines = machines
        with self._lock:
            if after:
                self._applied[view.uid] = after
            else:
                self._applied.pop(view.uid, None)

    # -- one object each --------------------------------------------------------------

    def _apply(
        self,
        scope: Scope,
        resource: Any,
        config: dict[str, Any],
        *,
        key: str,
        current: Mapping[str, Any] | None,
        before: Mapping[str, Applied],
        after: dict[str, Applied],
    ) -> dict[str, Any] | None:
        """Apply `config` unless kcp already did (returns the object written, else None)."""
        fingerprint = _fingerprint(config)
        version = str(((current or {}).get("metadata") or {}).get("resourceVersion") or "")
        last = before.get(key)
        # Applied already? Again only if the object lost some of it since.
        if (
            last is not None
            and last[0] == fingerprint
            and (current is None or version == last[1] or contains(current, _payload(config)))
        ):
            after[key] = last
            return None
        metadata = config["metadata"]
        try:
            written = self.kube.apply(resource, metadata["namespace"], metadata["name"], config)
        except ApiError as error:
            if error.not_found or error.status == 409:
                return None  # gone or replaced meanwhile: the next reconcile sees what is there
            self.recorder.warning(
                scope.kcp,
                "FailedInPlaceUpdate",
                f"Failed to update {config['kind']} {metadata['name']} in place: {error}",
            )
            scope.requeue_in(self.options.waiting_requeue)
            return None
        after[key] = (fingerprint, version)
        _log.info("Updated in place", kind=config["kind"], name=metadata["name"], machine_key=key)
        # Taken over from Cluster API's KCP: what it applied is kcp's alone from now on.
        paths = (
            MACHINE_IN_PLACE_FIELDS if config["kind"] == groups.MACHINE.kind else METADATA_FIELDS
        )
        release_fields(
            self.kube,
            resource,
            written,
            paths,
            managers=CLUSTER_API_KCP_MANAGERS,
            operations=("Apply", "Update"),
        )
        return written

    def _sync_machine(
        self,
        scope: Scope,
        machine: MachineView,
        before: Mapping[str, Applied],
        after: dict[str, Applied],
    ) -> MachineView:
        config = machine_apply_config(scope.view, scope.cluster.name, machine)
        written = self._apply(
            scope,
            groups.MACHINE,
            config,
            key=f"Machine/{machine.uid}",
            current=machine.raw,
            before=before,
            after=after,
        )
        return MachineView(drop_managed_fields(written)) if written else machine

    def _sync_config(
        self,
        scope: Scope,
        machine: MachineView,
        before: Mapping[str, Applied],
        after: dict[str, Applied],
    ) -> None:
        ref = machine.bootstrap_config_ref
        if ref is None or ref.kind != groups.KUBEADM_CONFIG.kind:
            return
        config_obj = self.cache.kubeadm_config(machine.namespace, ref.name)
        if config_obj is None:
            return
        config = metadata_apply_config(
            scope.view,
            scope.cluster.name,
            config_obj,
            api_version=groups.KUBEADM_CONFIG.api_version,
            kind=groups.KUBEADM_CONFIG.kind,
        )
        self._apply(
            scope,
            groups.KUBEADM_CONFIG,
            config,
            key=f"KubeadmConfig/{machine.uid}",
            current=config_obj,
            before=before,
            after=after,
        )

    def _sync_infra(
        self,
        scope: Scope,
        machine: MachineView,
        before: Mapping[str, Applied],
        after: dict[str, Applied],
    ) -> None:
        """Infrastructure machines are not cached: read live, only when there is news, and only
        the first time (the UID an apply needs is remembered; an apply that fails on it, the
        object being re-created, makes the next reconcile read again)."""
        ref = machine.infrastructure_ref
        if ref is None:
            return
        key = f"infra/{machine.uid}"
        # What would be applied, but for the UID (known after the read).
        planned = metadata_apply_config(
            scope.view,
            scope.cluster.name,
            {"metadata": {"name": ref.name, "namespace": machine.namespace}},
            api_version=ref.api_group,
            kind=ref.kind,
        )
        fingerprint = _fingerprint(planned)
        last = before.get(key)
        if last is not None and last[0] == fingerprint:
            after[key] = last
            return
        try:
            resource = self.kube.resource_for(ref.api_group, ref.kind)
        except LookupError as error:
            _log.warning("Infrastructure machine kind unknown", kind=ref.kind, error=str(error))
            return
        known_uid = last[1] if last is not None else ""
        if known_uid:
            current: dict[str, Any] | None = {
                "apiVersion": f"{resource.group}/{resource.version}",
                "kind": resource.kind,
                "metadata": {"name": ref.name, "namespace": machine.namespace, "uid": known_uid},
            }
        else:
            try:
                current = self.kube.get(resource, machine.namespace, ref.name)
            except ApiError as error:
                _log.warning("Infrastructure machine not read", name=ref.name, error=str(error))
                return
        if current is None:
            return
        config = metadata_apply_config(
            scope.view,
            scope.cluster.name,
            current,
            api_version=str(current.get("apiVersion") or ""),
            kind=str(current.get("kind") or ref.kind),
        )
        written = self._apply(
            scope, resource, config, key=key, current=None, before={}, after=after
        )
        if written is not None:  # remembered by what was planned, and the UID applied to
            after[key] = (fingerprint, str(config["metadata"].get("uid") or ""))

    def _sync_deleting(self, scope: Scope, machine: MachineView) -> MachineView:
        patch = deleting_machine_patch(scope.view, machine)
        if not patch:
            return machine
        try:
            written = self.kube.merge_patch(groups.MACHINE, machine.namespace, machine.name, patch)
        except ApiError as error:
            if not error.not_found:
                _log.warning("Deleting Machine not updated", machine=machine.name, error=str(error))
            return machine
        return MachineView(drop_managed_fields(written))
