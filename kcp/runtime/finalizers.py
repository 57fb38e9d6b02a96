"""Adding and dropping an object's finalizer, as every controller that owns a cleanup does.

The patch carries the object's `resourceVersion`, so a concurrent writer makes it
fail with 409 and the reconcile is retried on fresh data, never clobbering the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kcp.rest import ApiError, Kube, Resource

__all__ = ["add_finalizer", "has_finalizer", "remove_finalizer"]


def has_finalizer(obj: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in ((obj.get("metadata") or {}).get("finalizers") or ())


def _patch_finalizers(
    kube: Kube, resource: Resource, obj: Mapping[str, Any], finalizers: list[str]
) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return kube.merge_patch(
        resource,
        metadata.get("namespace") or None,
        str(metadata.get("name")),
        {
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": metadata.get("resourceVersion"),
            }
        },
    )


def add_finalizer(
    kube: Kube, resource: Resource, obj: Mapping[str, Any], finalizer: str
) -> dict[str, Any] | None:
    """Add `finalizer`; the patched object, or None when it was already there."""
    present = list((obj.get("metadata") or {}).get("finalizers") or [])
    if finalizer in present:
        return None
    return _patch_finalizers(kube, resource, obj, [*present, finalizer])


def remove_finalizer(
    kube: Kube, resource: Resource, obj: Mapping[str, Any], finalizer: str
) -> bool:
    """Drop `finalizer`; returns whether there was one to drop."""
    present = list((obj.get("metadata") or {}).get("finalizers") or [])
    if finalizer not in present:
        return False
    try:
        _patch_finalizers(kube, resource, obj, [f for f in present if f != finalizer])
    except ApiError as error:
        # A reconcile from a cache that has not seen the deletion yet: the object is
        # gone, so is the finalizer.
        if not error.not_found:
            raise
    return True
