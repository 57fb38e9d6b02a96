"""The finalizer lifecycle both infrastructure reconcilers share, against fakes."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from kcp.api import groups
from kcp.runtime import ObjectKey, Result
from kcp.sim.infrastructure import LocalClusterReconciler, LocalMachineReconciler
from kcp.sim.state import LOCAL_CLUSTER_FINALIZER, LOCAL_MACHINE_FINALIZER

KEY = ObjectKey("ns", "one")

KINDS = [
    pytest.param(
        LocalClusterReconciler, "local_clusters", "clusters", groups.LOCAL_CLUSTER,
        LOCAL_CLUSTER_FINALIZER, id="LocalCluster",
    ),
    pytest.param(
        LocalMachineReconciler, "local_machines", "machines", groups.LOCAL_MACHINE,
        LOCAL_MACHINE_FINALIZER, id="LocalMachine",
    ),
]  # fmt: skip


class _Cache:
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((str(namespace), name))


class _Kube:
    def __init__(self) -> None:
        self.patches: list[tuple[Any, ...]] = []

    def merge_patch(self, resource: Any, namespace: Any, name: str, patch: Any) -> None:
        self.patches.append((resource, namespace, name, patch))


class _Sim:
    """What the release of a cluster or a machine touches."""

    def __init__(self) -> None:
        self.torn_down = False
        self.name = KEY.name
        self.cluster = SimpleNamespace(machines={})
        self.etcd = None
        self.log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)

    def leftover_member(self) -> bool:
        return False

    def forget_node(self) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    def teardown(self) -> None:
        self.torn_down = True


def _state(cache: str, obj: dict[str, Any] | None) -> Any:
    objects = {} if obj is None else {(KEY.namespace, KEY.name): obj}
    caches = {"local_clusters": _Cache({}), "local_machines": _Cache({})}
    caches[cache] = _Cache(objects)
    return SimpleNamespace(
        caches=SimpleNamespace(**caches),
        clusters={},
        machines={},
        lock=threading.RLock(),
        kube=_Kube(),
    )


def _object(*finalizers: str, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": KEY.name, "namespace": KEY.namespace, "uid": "u"}
    metadata.update(finalizers=list(finalizers), resourceVersion="7")
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata}


@pytest.mark.parametrize(("reconciler", "cache", "sims", "resource", "finalizer"), KINDS)
def test_gone_object_releases_what_runs_for_it(
    reconciler: Any, cache: str, sims: str, resource: Any, finalizer: str
) -> None:
    state = _state(cache, None)
    sim = _Sim()
    getattr(state, sims)[(KEY.namespace, KEY.name)] = sim
    assert reconciler(state)(KEY) == Result()
    assert sim.torn_down
    assert getattr(state, sims) == {}
    assert state.kube.patches == []


@pytest.mark.parametrize(("reconciler", "cache", "sims", "resource", "finalizer"), KINDS)
def test_deleting_object_is_released_then_loses_its_finalizer(
    reconciler: Any, cache: str, sims: str, resource: Any, finalizer: str
) -> None:
    state = _state(cache, _object("other", finalizer, deleting=True))
    sim = _Sim()
    getattr(state, sims)[(KEY.namespace, KEY.name)] = sim
    assert reconciler(state)(KEY) == Result()
    assert sim.torn_down
    patch = {"metadata": {"finalizers": ["other"], "resourceVersion": "7"}}
    assert state.kube.patches == [(resource, KEY.namespace, KEY.name, patch)]


@pytest.mark.parametrize(("reconciler", "cache", "sims", "resource", "finalizer"), KINDS)
def test_new_object_only_gets_its_finalizer(
    reconciler: Any, cache: str, sims: str, resource: Any, finalizer: str
) -> None:
    state = _state(cache, _object())
    assert reconciler(state)(KEY) == Result()
    patch = {"metadata": {"finalizers": [finalizer], "resourceVersion": "7"}}
    assert state.kube.patches == [(resource, KEY.namespace, KEY.name, patch)]
    assert getattr(state, sims) == {}
