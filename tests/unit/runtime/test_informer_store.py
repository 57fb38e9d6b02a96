"""The informer store: keys, replace semantics, and secondary indexes."""

from __future__ import annotations

from typing import Any

import pytest

from kcp.runtime.store import (
    ADDED,
    DELETED,
    MODIFIED,
    Store,
    label_index,
    label_index_value,
    make_key,
    namespace_index,
    object_key,
    owner_index,
    owner_index_value,
    owner_uid_index,
    split_key,
)

CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"


def obj(
    name: str,
    namespace: str = "ns",
    rv: str = "1",
    labels: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    if owners:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata}


def owner(kind: str, name: str, uid: str = "", controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
        "kind": kind,
        "name": name,
        "uid": uid or f"uid-{name}",
        "controller": controller,
    }


def test_keys_are_namespace_slash_name_or_bare_name() -> None:
    assert object_key(obj("a", "ns")) == "ns/a"
    assert object_key(obj("node-1", "")) == "node-1"
    assert make_key("ns", "a") == "ns/a"
    assert make_key(None, "a") == "a"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("a") == ("", "a")


def test_upsert_and_delete_return_the_previous_object() -> None:
    store = Store()
    first = obj("a", rv="1")
    assert store.upsert(first) is None
    second = obj("a", rv="2")
    assert store.upsert(second) is first
    assert store.get("ns/a") is second
    assert len(store) == 1 and "ns/a" in store
    assert store.delete("ns/a") is second
    assert store.delete("ns/a") is None
    assert store.list() == [] and store.keys() == []


def test_replace_reports_deleted_added_and_changed_only() -> None:
    store = Store()
    for name in ("keep", "change", "gone"):
        store.upsert(obj(name, rv="1"))
    events = store.replace(
        {"ns/keep": obj("keep", rv="1"), "ns/change": obj("change", rv="5"), "ns/new": obj("new")}
    )
    summary = sorted((t, o["metadata"]["name"]) for t, o, _ in events)
    assert summary == [(ADDED, "new"), (DELETED, "gone"), (MODIFIED, "change")]
    modified = next(e for e in events if e[0] == MODIFIED)
    assert modified[2] is not None and modified[2]["metadata"]["resourceVersion"] == "1"
    assert sorted(store.keys()) == ["ns/change", "ns/keep", "ns/new"]


def test_label_index_is_namespaced_by_default() -> None:
    store = Store()
    store.add_indexer("cluster", label_index(CLUSTER_LABEL))
    store.upsert(obj("a", "ns1", labels={CLUSTER_LABEL: "c1"}))
    store.upsert(obj("b", "ns2", labels={CLUSTER_LABEL: "c1"}))
    store.upsert(obj("c", "ns1"))
    names = [
        o["metadata"]["name"] for o in store.by_index("cluster", label_index_value("ns1", "c1"))
    ]
    assert names == ["a"]
    assert store.index_values("cluster") == ["ns1/c1", "ns2/c1"]

    bare = Store()
    bare.add_indexer("cluster", label_index(CLUSTER_LABEL, namespaced=False))
    bare.upsert(obj("a", "ns1", labels={CLUSTER_LABEL: "c1"}))
    bare.upsert(obj("b", "ns2", labels={CLUSTER_LABEL: "c1"}))
    assert len(bare.by_index("cluster", "c1")) == 2


def test_index_follows_updates_deletes_and_replace() -> None:
    store = Store()
    store.add_indexer("cluster", label_index(CLUSTER_LABEL))
    store.upsert(obj("a", labels={CLUSTER_LABEL: "c1"}))
    store.upsert(obj("a", rv="2", labels={CLUSTER_LABEL: "c2"}))
    assert store.by_index("cluster", "ns/c1") == []
    assert [o["metadata"]["name"] for o in store.by_index("cluster", "ns/c2")] == ["a"]
    store.delete("ns/a")
    assert store.by_index("cluster", "ns/c2") == []
    assert store.index_values("cluster") == []

    store.upsert(obj("b", labels={CLUSTER_LABEL: "c3"}))
    store.replace({"ns/d": obj("d", labels={CLUSTER_LABEL: "c4"})})
    assert store.index_values("cluster") == ["ns/c4"]


def test_indexer_added_late_indexes_existing_objects() -> None:
    store = Store()
    store.upsert(obj("a", owners=[owner("KubeadmControlPlane", "kcp1")]))
    store.add_indexer("owner", owner_index)
    found = store.by_index("owner", owner_index_value("KubeadmControlPlane", "ns", "kcp1"))
    assert [o["metadata"]["name"] for o in found] == ["a"]
    with pytest.raises(ValueError, match="already exists"):
        store.add_indexer("owner", owner_index)
    with pytest.raises(KeyError):
        store.by_index("nope", "x")


def test_owner_indexes_by_name_and_by_uid() -> None:
    machine = obj(
        "m1",
        owners=[owner("KubeadmControlPlane", "kcp1", uid="u1"), owner("Cluster", "c1", uid="u2")],
    )
    assert owner_index(machine) == ["KubeadmControlPlane/ns/kcp1", "Cluster/ns/c1"]
    assert owner_uid_index(machine) == ["u1", "u2"]
    assert owner_index(obj("orphan")) == []
    assert owner_index_value("Node", None, "n1") == "Node/n1"
    assert namespace_index(obj("x", "ns9")) == ["ns9"]
