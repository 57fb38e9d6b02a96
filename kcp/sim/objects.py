"""Small reads and writes over object dicts that every simulator controller needs.

Metadata changes (owner references, labels; finalizers in `kcp.runtime.finalizers`)
are merge patches that carry the object's `resourceVersion`, so a concurrent writer
makes them fail with 409 and the reconcile is retried on fresh data, never clobbering
a list.
Status goes through server-side apply (`Kube.apply`), conditions included: the
simulator owns only the condition types it sends.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kcp.api.conditions import find_condition, set_condition
from kcp.api.objects import dig
from kcp.rest import ApiError, Kube, Resource

__all__ = [
    "create_if_absent",
    "ensure_owner",
    "merged_conditions",
    "meta",
    "owner_name",
]


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def owner_name(obj: Mapping[str, Any], kind: str, group: str) -> str | None:
    """The name of the first owner of `kind` in API `group` (controller or not)."""
    for ref in meta(obj).get("ownerReferences") or ():
        api_version = str(ref.get("apiVersion", ""))
        if ref.get("kind") == kind and api_version.rpartition("/")[0] == group:
            name = ref.get("name")
            return str(name) if name else None
    return None


def create_if_absent(
    kube: Kube, resource: Resource, namespace: str | None, body: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Create the object; None if one of that name exists already (the simulator's writes
    are idempotent: a retried reconcile or a restarted kubelet creates again)."""
    try:
        return kube.create(resource, namespace, body)
    except ApiError as error:
        if not error.conflict:
            raise
        return None


def ensure_owner(
    kube: Kube,
    resource: Resource,
    obj: Mapping[str, Any],
    owner: Mapping[str, Any],
    *,
    labels: Mapping[str, str] | None = None,
) -> bool:
    """Make `owner` an owner of `obj` (the controller, unless another one controls it).

    Also sets `labels`. Returns whether it patched. This is what Cluster API's
    core controllers do to the objects a Cluster or Machine references.
    """
    metadata = meta(obj)
    owner_meta = meta(owner)
    refs = [dict(r) for r in metadata.get("ownerReferences") or []]
    uid = owner_meta.get("uid")
    present = any(r.get("uid") == uid for r in refs)
    current_labels = dict(metadata.get("labels") or {})
    missing_labels = {k: v for k, v in (labels or {}).items() if current_labels.get(k) != v}
    if present and not missing_labels:
        return False
    patch: dict[str, Any] = {"resourceVersion": metadata.get("resourceVersion")}
    if not present:
        controlled = any(r.get("controller") for r in refs)
        refs.append(
            {
                "apiVersion": owner.get("apiVersion"),
                "kind": owner.get("kind"),
                "name": owner_meta.get("name"),
                "uid": uid,
                "controller": not controlled,
                "blockOwnerDeletion": True,
            }
        )
        patch["ownerReferences"] = refs
    if missing_labels:
        patch["labels"] = missing_labels
    kube.merge_patch(
        resource, metadata.get("namespace"), str(metadata["name"]), {"metadata": patch}
    )
    return True


def merged_conditions(
    obj: Mapping[str, Any],
    wanted: Iterable[tuple[str, str | bool, str, str]],
    *,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The simulator's conditions for `obj` after setting `wanted` (type, status, reason, message).

    Returns only the types in `wanted` (what the simulator owns under server-side
    apply), keeping each one's `lastTransitionTime` unless its status changed,
    and whether anything differs from the object's current conditions.
    """
    current = dig(obj, "status", "conditions")
    current = current if isinstance(current, list) else []
    at = now or datetime.now(UTC)
    generation = meta(obj).get("generation")
    result: list[dict[str, Any]] = []
    changed = False
    for condition_type, status, reason, message in wanted:
        existing = find_condition(current, condition_type)
        working = [copy.deepcopy(existing)] if existing is not None else []
        if set_condition(
            working,
            condition_type,
            status,
            reason,
            message[:32768],
            generation if isinstance(generation, int) else None,
            at,
        ):
            changed = True
        result.append(working[0])
    return result, changed
