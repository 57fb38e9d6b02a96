"""Event handlers: what an informer calls on a change, and helpers that map changes to keys.

An event handler is any callable `(event_type, obj, old_obj)`; `event_type` is
"ADDED", "MODIFIED" or "DELETED" and `old_obj` is the previous object on
MODIFIED (None otherwise). Handlers run on the informer's thread, one event at
a time, so they must be quick: a controller's handler only turns the object into
reconcile keys and puts them on its queue.

The mapping helpers build that kind of handler in two steps, as
controller-runtime's `handler.EnqueueRequestForOwner` does: describe the mapping
(`enqueue_owner("KubeadmControlPlane", "controlplane.cluster.x-k8s.io")`), then
`bind` it to the controller's enqueue function, which receives
`kcp.runtime.controller.ObjectKey`s (mappers produce plain `(namespace, name)`
tuples). On MODIFIED both the old and the
new object are mapped, so a Machine that moves from one owner to another wakes both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kcp.runtime.logging import get_logger
from kcp.runtime.store import ADDED, DELETED, MODIFIED

if TYPE_CHECKING:
    from kcp.runtime.controller import ObjectKey

Key = tuple[str, str]
"""A reconcile key: (namespace, name); namespace is "" for cluster-scoped objects."""

Enqueue = Callable[[Key], None]
EventHandler = Callable[[str, dict[str, Any], dict[str, Any] | None], None]
Mapper = Callable[[dict[str, Any]], Iterable[Key]]
ObjectCallback = Callable[[dict[str, Any]], None]
UpdateCallback = Callable[[dict[str, Any], dict[str, Any]], None]

_log = get_logger(__name__)


def callbacks(
    on_add: ObjectCallback | None = None,
    on_update: UpdateCallback | None = None,
    on_delete: ObjectCallback | None = None,
) -> EventHandler:
    """One event handler from client-go style callbacks; `on_update(old, new)`."""

    def handle(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if event_type == ADDED and on_add is not None:
            on_add(obj)
        elif event_type == MODIFIED and on_update is not None:
            on_update(old if old is not None else obj, obj)
        elif event_type == DELETED and on_delete is not None:
            on_delete(obj)

    return handle


# -- mappers: object -> keys ---------------------------------------------------------------


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def self_key(obj: dict[str, Any]) -> list[Key]:
    """The object's own key."""
    metadata = _meta(obj)
    name = metadata.get("name")
    return [(str(metadata.get("namespace") or ""), str(name))] if name else []


def owner_keys(kind: str, api_group: str, *, controller_only: bool = True) -> Mapper:
    """Keys of the object's owners of `kind` in `api_group` (any version of it).

    `controller_only` (the default) follows only the owner reference marked
    `controller: true`, as controller-runtime's `OnlyControllerOwner` does.
    """

    def owners(obj: dict[str, Any]) -> list[Key]:
        metadata = _meta(obj)
        namespace = str(metadata.get("namespace") or "")
        keys: list[Key] = []
        for ref in metadata.get("ownerReferences") or ():
            if ref.get("kind") != kind or _group_of(str(ref.get("apiVersion", ""))) != api_group:
                continue
            if controller_only and not ref.get("controller"):
                continue
            if ref.get("name"):
                keys.append((namespace, str(ref["name"])))
        return keys

    return owners


def label_keys(label_key: str) -> Mapper:
    """The key of the object named by label `label_key`, in the labelled object's namespace.

    E.g. a Secret labelled `cluster.x-k8s.io/cluster-name: c1` maps to (its namespace, "c1").
    """

    def by_label(obj: dict[str, Any]) -> list[Key]:
        metadata = _meta(obj)
        value = (metadata.get("labels") or {}).get(label_key)
        return [(str(metadata.get("namespace") or ""), str(value))] if value else []

    return by_label


def _group_of(api_version: str) -> str:
    group, _, _ = api_version.rpartition("/")
    return group


# -- filters -------------------------------------------------------------------------------

_VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})


def relevant_fields(*status_fields: str) -> Callable[[dict[str, Any]], Any]:
    """What of an object a controller acts on: its metadata (but the fields every write
    changes), its spec, and only `status_fields` of its status."""

    def view(obj: dict[str, Any]) -> Any:
        metadata = {k: v for k, v in _meta(obj).items() if k not in _VOLATILE_METADATA}
        status = obj.get("status")
        picked = [status.get(f) for f in status_fields] if isinstance(status, dict) else []
        return metadata, obj.get("spec"), picked

    return view


def unless_unchanged(
    handler: EventHandler, relevant: Callable[[dict[str, Any]], Any]
) -> EventHandler:
    """`handler`, but for a MODIFIED event that left `relevant(obj)` as it was (another
    controller's status conditions, say): as controller-runtime's update predicates, it
    keeps a write nobody here reads from waking a reconcile."""

    def handle(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if event_type == MODIFIED and old is not None and relevant(old) == relevant(obj):
            return
        handler(event_type, obj, old)

    return handle


# -- mappings bound to a queue -------------------------------------------------------------


@dataclass(frozen=True)
class EnqueueMapping:
    """A rule mapping a change to reconcile keys; `bind(enqueue)` makes it an event handler."""

    mapper: Mapper

    def keys_for(
        self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> list[Key]:
        """The distinct keys a change maps to, in first-seen order (old object's first)."""
        seen: dict[Key, None] = {}
        if event_type == MODIFIED and old is not None:
            seen.update(dict.fromkeys(self.mapper(old)))
        seen.update(dict.fromkeys(self.mapper(obj)))
        return list(seen)

    def bind(self, enqueue: Callable[[ObjectKey], None]) -> EventHandler:
        """An event handler calling `enqueue(ObjectKey)` for every key a change maps to."""
        # Imported here: the controller may import this module to offer watches.
        from kcp.runtime.controller import ObjectKey

        def handle(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            for namespace, name in self.keys_for(event_type, obj, old):
                enqueue(ObjectKey(namespace, name))

        return handle


def map_to(fn: Mapper) -> EnqueueMapping:
    """Any mapping: `fn(obj)` returns the keys to reconcile (a Cluster to its control plane)."""
    return EnqueueMapping(fn)


def enqueue_self() -> EnqueueMapping:
    """Reconcile the object itself (the primary kind of a controller)."""
    return EnqueueMapping(self_key)


def enqueue_owner(kind: str, api_group: str, *, controller_only: bool = True) -> EnqueueMapping:
    """Reconcile the object's (controller) owner of `kind` in `api_group`."""
    return EnqueueMapping(owner_keys(kind, api_group, controller_only=controller_only))


def enqueue_by_label(label_key: str) -> EnqueueMapping:
    """Reconcile the object named by label `label_key` in the same namespace."""
    return EnqueueMapping(label_keys(label_key))


def safe_call(handler: EventHandler, event_type: str, obj: dict[str, Any], old: Any) -> None:
    """Call `handler`, logging (not raising) its failure: one bad handler must not stop a watch."""
    try:
        handler(event_type, obj, old)
    except Exception:
        metadata = _meta(obj)
        _log.exception(
            "event handler failed",
            event_type=event_type,
            namespace=metadata.get("namespace"),
            name=metadata.get("name"),
        )
