"""Handing the in-place mutable fields of a new object from its create to kcp's apply.

kcp creates a Machine, its KubeadmConfig and infrastructure machine with a
plain create, which records kcp as an `Update` owner of every field. Server-side
apply removes a field kcp stops applying only if no other owner is left, so a
label the template had at creation would stay forever once removed from it.
Right after creating an object kcp therefore drops the `Update` entry's claim on
those fields (as Cluster API does for its KubeadmConfigs and infrastructure
machines); its first in-place apply (`kcp.controlplane.inplace`) claims them as
kcp's again, this time as the applier.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from kcp.controlplane.client import ApiError, Kube, ResourceLike
from kcp.runtime.logging import get_logger

__all__ = [
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

_ATTEMPTS = 3


def without_fields(
    managed_fields: Sequence[Mapping[str, Any]], manager: str, paths: Sequence[FieldPath]
) -> list[dict[str, Any]] | None:
    """`managed_fields` with `manager`'s `Update` entry (main resource) no longer owning
    `paths`; None when it owns none of them (nothing to change)."""
    result: list[dict[str, Any]] = []
    changed = False
    for entry in managed_fields:
        copied = copy.deepcopy(dict(entry))
        fields = copied.get("fieldsV1")
        if (
            copied.get("manager") == manager
            and copied.get("operation") == "Update"
            and not copied.get("subresource")
            and isinstance(fields, dict)
        ):
            for path in paths:
                parent: Any = fields
                for key in path[:-1]:
                    parent = parent.get(key) if isinstance(parent, dict) else None
                if isinstance(parent, dict) and path[-1] in parent:
                    del parent[path[-1]]
                    changed = True
        result.append(copied)
    return result if changed else None


def release_fields(
    kube: Kube,
    resource: ResourceLike,
    created: Mapping[str, Any],
    paths: Sequence[FieldPath] = METADATA_FIELDS,
) -> None:
    """Drop kcp's create-time claim on `paths` of the object `created` (as returned by the
    create); never raises: if it fails, only a later removal from the template stays undone."""
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
        managed = without_fields(entries, kube.field_manager, paths) if entries else None
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
