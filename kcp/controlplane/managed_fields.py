"""Handing the in-place mutable fields of a new object from its create to kcp's apply.

kcp creates a Machine, its KubeadmConfig and infrastructure machine with a
plain create, which records kcp as an `Update` owner of every field. Server-side
apply removes a field kcp stops applying only if no other owner is left, so a
label the template had at creation would stay forever once removed from it.
Right after creating an object kcp therefore drops the `Update` entry's claim on
those fields (as Cluster API does for its KubeadmConfigs and infrastructure
machines); its first in-place apply (`kcp.controlplane.inplace`) claims them as
kcp's again, this time as the applier.

A control plane taken over from Cluster API's KCP has its Machines, KubeadmConfigs
and infrastructure machines applied by Cluster API's field managers
(`CLUSTER_API_KCP_MANAGERS`); kcp's first apply to each drops their claims on
the same fields, or a label later removed from the template would stay forever.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kcp.rest import ApiError, Kube, Resource
from kcp.runtime.logging import get_logger

__all__ = [
    "CLUSTER_API_KCP_MANAGERS",
    "MACHINE_IN_PLACE_FIELDS",
    "METADATA_FIELDS",
    "release_fields",
    "without_fields",
]

_log = get_logger("kcp.controlplane.reconciler")

FieldPath = tuple[str, ...]

METADATA_FIELDS: tuple[FieldPath, ...] = (
    ("f:metadata", "f:labels"),
    ("f:metadata", "f:annotations"),
)
"""What kcp keeps in place on a KubeadmConfig and an infrastructure machine."""

MACHINE_IN_PLACE_FIELDS: tuple[FieldPath, ...] = (
    *METADATA_FIELDS,
    ("f:spec", "f:deletion"),
    ("f:spec", "f:readinessGates"),
    ("f:spec", "f:taints"),
)
"""What kcp keeps in place on a Machine."""

CLUSTER_API_KCP_MANAGERS = ("capi-kubeadmcontrolplane", "capi-kubeadmcontrolplane-metadata")
"""The field managers of Cluster API's KCP (v1.12 and later): the first applies Machines and
creates KubeadmConfigs and infrastructure machines, the second keeps their labels and
annotations."""

_ATTEMPTS = 3


def _drop(fields: dict[str, Any], path: FieldPath) -> bool:
    """Remove `path` from a FieldsV1 tree, and the parents it leaves empty (an empty `{}`
    under a key would mean owning that key); whether it was there."""
    parents: list[dict[str, Any]] = [fields]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return False
        parents.append(child)
    if path[-1] not in parents[-1]:
        return False
    del parents[-1][path[-1]]
    for depth in range(len(parents) - 1, 0, -1):
        if parents[depth]:
            break
        del parents[depth - 1][path[depth - 1]]
    return True


def without_fields(
    managed_fields: Sequence[Mapping[str, Any]],
    managers: str | Collection[str],
    paths: Sequence[FieldPath],
    *,
    operations: Collection[str] = ("Update",),
) -> list[dict[str, Any]] | None:
    """`managed_fields` with the entries of `managers` for `operations` (main resource) no
    longer owning `paths` (an entry left owning nothing goes); None when they own none of
    them (nothing to change)."""
    wanted = {managers} if isinstance(managers, str) else set(managers)
    result: list[dict[str, Any]] = []
    changed = False
    for entry in managed_fields:
        copied = copy.deepcopy(dict(entry))
        fields = copied.get("fieldsV1")
        if (
            copied.get("manager") in wanted
            and copied.get("operation") in operations
            and not copied.get("subresource")
            and isinstance(fields, dict)
        ):
            touched = [_drop(fields, path) for path in paths]
            changed = changed or any(touched)
            if any(touched) and not fields:
                continue
        result.append(copied)
    return result if changed else None


def release_fields(
    kube: Kube,
    resource: Resource,
    created: Mapping[str, Any],
    paths: Sequence[FieldPath] = METADATA_FIELDS,
    *,
    managers: str | Collection[str] | None = None,
    operations: Collection[str] = ("Update",),
) -> None:
    """Drop kcp's create-time claim (or that of `managers` for `operations`) on `paths` of the
    object `created` (as returned by the create or an apply); never raises: if it fails, only
    a later removal from the template stays undone."""
    obj: Mapping[str, Any] | None = created
    metadata = created.get("metadata") or {}
    namespace, name = metadata.get("namespace"), str(metadata.get("name") or "")
    for _ in range(_ATTEMPTS):
        if obj is None:
            return
        current = obj.get("metadata") or {}
        if current.get("uid") != metadata.get("uid"):
            return  # another incarnation
        entries = current.get("managedFields")
        managed = (
            without_fields(
                entries,
                kube.field_manager if managers is None else managers,
                paths,
                operations=operations,
            )
            if entries
            else None
        )
        if managed is None:
            return
        try:
            kube.merge_patch(
                resource,
                namespace,
                name,
                {
                    "metadata": {
                        # Optimistic lock: never roll back another writer's bookkeeping.
                        "resourceVersion": current.get("resourceVersion"),
                        "managedFields": managed,
                    }
                },
            )
            return
        except ApiError as error:
            if error.status != 409:
                _log.warning(
                    "Field ownership not handed over",
                    kind=resource.kind,
                    name=name,
                    error=str(error),
                )
                return
        try:
            obj = kube.get(resource, namespace, name)
        except ApiError as error:
            _log.warning(
                "Field ownership not handed over", kind=resource.kind, name=name, error=str(error)
            )
            return
    _log.warning("Field ownership not handed over: kept changing", kind=resource.kind, name=name)
