"""The thread-safe object store behind an informer, with secondary indexes.

Objects are keyed "namespace/name" ("name" for cluster-scoped kinds), as in
client-go. The store hands out the very dicts it holds, so lookups cost
nothing: callers must treat them as read-only (`copy.deepcopy` before changing
one). Index functions map an object to the index values it should be found
under; `by_index(name, value)` answers in time proportional to the result.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Mapping
from typing import Any

IndexFunc = Callable[[dict[str, Any]], list[str]]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"

StoreEvent = tuple[str, dict[str, Any], dict[str, Any] | None]
"""(event type, object, previous object or None): what a change means for handlers."""


def object_key(obj: Mapping[str, Any]) -> str:
    """The store key of `obj`: "namespace/name", or "name" without a namespace."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") or ""
    name = metadata.get("name") or ""
    return f"{namespace}/{name}" if namespace else str(name)


def make_key(namespace: str | None, name: str) -> str:
    """The store key for `namespace`/`name` (namespace None or "" for cluster-scoped)."""
    return f"{namespace}/{name}" if namespace else name


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) from a store key; namespace is "" for cluster-scoped objects."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Store:
    """Objects by key plus any number of named indexes, all guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._items: dict[str, dict[str, Any]] = {}
        self._indexers: dict[str, IndexFunc] = {}
        # index name -> index value -> keys of the objects found under it
        self._indices: dict[str, dict[str, set[str]]] = {}

    # -- indexes ----------------------------------------------------------------------

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Register index `name`; objects already stored are indexed at once."""
        with self._lock:
            if name in self._indexers:
                raise ValueError(f"indexer {name!r} already exists")
            self._indexers[name] = fn
            index: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        """Objects found under `value` in index `name`, sorted by key."""
        with self._lock:
            if name not in self._indices:
                raise KeyError(f"no indexer named {name!r}")
            keys = sorted(self._indices[name].get(value, ()))
            return [self._items[key] for key in keys]

    def index_values(self, name: str) -> list[str]:
        """Every value that currently has objects in index `name`."""
        with self._lock:
            if name not in self._indices:
                raise KeyError(f"no indexer named {name!r}")
            return sorted(self._indices[name])

    # -- reads ------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)

    def list(self) -> builtins.list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    # -- writes -----------------------------------------------------------------------

    def upsert(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Store `obj` (added or replacing its older self); returns the object it replaced."""
        key = object_key(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._unindex(key, old)
            self._items[key] = obj
            self._index(key, obj)
            return old

    def delete(self, key: str) -> dict[str, Any] | None:
        """Remove `key`; returns the object removed, or None if there was none."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            return old

    def replace(self, objects: Mapping[str, dict[str, Any]]) -> builtins.list[StoreEvent]:
        """Make the store hold exactly `objects` (key -> object), as after a fresh list.

        Returns what changed, like client-go's Replace: DELETED for objects that
        vanished, ADDED for new ones, MODIFIED for those whose resourceVersion
        changed (an unchanged object is no news, so it is not reported).
        """
        events: builtins.list[StoreEvent] = []
        with self._lock:
            for key in [k for k in self._items if k not in objects]:
                old = self._items.pop(key)
                self._unindex(key, old)
                events.append((DELETED, old, None))
            for key, obj in objects.items():
                previous = self._items.get(key)
                if previous is not None:
                    self._unindex(key, previous)
                self._items[key] = obj
                self._index(key, obj)
                if previous is None:
                    events.append((ADDED, obj, None))
                elif resource_version(previous) != resource_version(obj):
                    events.append((MODIFIED, obj, previous))
        return events

    def _index(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


# -- built-in index functions --------------------------------------------------------------


def owner_index_value(kind: str, namespace: str | None, name: str) -> str:
    """The `owner_index` value of an owner: "Kind/namespace/name" ("Kind/name" if unnamespaced)."""
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def owner_index(obj: dict[str, Any]) -> list[str]:
    """Index by owner: one "Kind/namespace/name" value per ownerReference.

    Owners live in the object's own namespace (or are cluster-scoped), so the
    namespace is the object's. Names, not UIDs, because a reconciler holds a
    key and wants to ask "what does this owner own" without reading the owner
    first; the API group is left out (use `owner_uid_index` when kinds of two
    groups could collide).
    """
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") or ""
    return [
        owner_index_value(str(ref.get("kind", "")), namespace, str(ref.get("name", "")))
        for ref in metadata.get("ownerReferences") or ()
    ]


def owner_uid_index(obj: dict[str, Any]) -> list[str]:
    """Index by the UID of each owner: exact, survives a same-named owner being re-created."""
    metadata = obj.get("metadata") or {}
    return [str(ref["uid"]) for ref in metadata.get("ownerReferences") or () if ref.get("uid")]


def namespace_index(obj: dict[str, Any]) -> list[str]:
    """Index by namespace (cluster-scoped objects are found under "")."""
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def label_index_value(namespace: str | None, value: str) -> str:
    """The value a namespaced `label_index` files an object under: "namespace/value"."""
    return f"{namespace}/{value}" if namespace else value


def label_index(label_key: str, *, namespaced: bool = True) -> IndexFunc:
    """An index function by the value of label `label_key` (objects without it are left out).

    A label value usually names something in the object's own namespace (the
    `cluster.x-k8s.io/cluster-name` of a Secret names a Cluster beside it), and
    two namespaces may reuse a name, so by default the value is filed as
    "namespace/value" (see `label_index_value`); `namespaced=False` files the
    bare value.
    """

    def index(obj: dict[str, Any]) -> list[str]:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if label_key not in labels:
            return []
        value = str(labels[label_key])
        if not namespaced:
            return [value]
        return [label_index_value(metadata.get("namespace"), value)]

    return index
