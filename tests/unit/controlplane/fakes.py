"""In-memory stand-ins for the API server, the informer caches and the tracker."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from kcp.api import labels
from kcp.api.groups import find
from kcp.controlplane.events import EventRecorder
from kcp.controlplane.reconciler import KubeadmControlPlaneReconciler, ReconcilerOptions
from kcp.etcd import DIRECT, EtcdClusterStatus, Member, MemberHealth, MemberStatus
from kcp.rest import ApiError, Resource
from kcp.tracker.errors import NotConnected
from kcp.tracker.identity import ClusterKey
from kcp.tracker.recent import ClientReads
from tests.unit.controlplane.builders import NOW, ts


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKube:
    """Objects by (kind, namespace, name) with resourceVersions, finalizers and /status."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)
        self.calls: list[tuple[str, str, str]] = []
        self.fail_create: set[str] = set()
        self.applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.field_manager = "kcp-test"

    def _key(self, resource: Resource, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (resource.kind, namespace or "", name)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("uid", f"uid-{next(self._uid)}")
        metadata["resourceVersion"] = str(next(self._rv))
        self.objects[(obj["kind"], metadata.get("namespace", ""), metadata["name"])] = obj
        return copy.deepcopy(obj)

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", resource.kind, name))
        found = self.objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(
        self, resource: Resource, namespace: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (kind, ns, _name), o in self.objects.items()
            if kind == resource.kind and (namespace is None or ns == namespace)
        ]

    def create(
        self, resource: Resource, namespace: str | None, obj: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("create", resource.kind, obj["metadata"]["name"]))
        if resource.kind in self.fail_create:
            raise ApiError(500, "InternalError", "injected")
        key = self._key(resource, namespace, obj["metadata"]["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", "exists")
        created = copy.deepcopy(dict(obj))
        created["kind"] = resource.kind
        created["metadata"]["namespace"] = namespace
        created["metadata"]["creationTimestamp"] = ts(NOW)
        created["metadata"].setdefault("generation", 1)
        return self.put(created)

    def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        self.calls.append(
            ("patch" + (f"/{subresource}" if subresource else ""), resource.kind, name)
        )
        key = self._key(resource, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise ApiError(404, "NotFound", "not found")
        wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted_rv is not None and wanted_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        patch = copy.deepcopy(dict(patch))
        if subresource == "status":
            patch = {"status": patch.get("status")}
        else:
            patch.pop("status", None)
        updated = merge_patch(current, patch)
        if updated["metadata"].get("deletionTimestamp") and not updated["metadata"].get(
            "finalizers"
        ):
            del self.objects[key]
            return copy.deepcopy(updated)
        return self.put(updated)

    def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        obj: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Server-side apply, simplified: labels, annotations and spec keys kcp applied before
        and leaves out now are removed; the rest is merged (lists replaced)."""
        self.calls.append(("apply", resource.kind, name))
        key = self._key(resource, namespace, name)
        current = self.objects.get(key)
        uid = (obj.get("metadata") or {}).get("uid")
        if current is None:
            raise ApiError(404, "NotFound", "not found")
        if uid and current["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", "uid precondition failed")
        applied = copy.deepcopy(dict(obj))
        previous = self.applied.get(key, {})
        updated = copy.deepcopy(current)
        for section, path in (("labels", "metadata"), ("annotations", "metadata")):
            target = updated.setdefault(path, {}).setdefault(section, {})
            for gone in set((previous.get(path) or {}).get(section) or {}) - set(
                (applied.get(path) or {}).get(section) or {}
            ):
                target.pop(gone, None)
            target.update((applied.get(path) or {}).get(section) or {})
        if "spec" in applied or "spec" in previous:
            spec = updated.setdefault("spec", {})
            for gone in set(previous.get("spec") or {}) - set(applied.get("spec") or {}):
                spec.pop(gone, None)
            spec.update(applied.get("spec") or {})
        self.applied[key] = applied
        return self.put(updated)

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        **_: Any,
    ) -> bool:
        self.calls.append(("delete", resource.kind, name))
        key = self._key(resource, namespace, name)
        current = self.objects.get(key)
        if current is None:
            return False
        if uid and current["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", "uid precondition failed")
        if current["metadata"].get("finalizers"):
            current["metadata"]["deletionTimestamp"] = ts(NOW)
            self.put(current)
        else:
            del self.objects[key]
        return True

    def resource_for(self, api_group: str, kind: str) -> Resource:
        known = find(api_group, kind)
        if known is None:
            raise LookupError(f"the API server serves no kind {kind} in API group {api_group}")
        return known

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _, _), o in sorted(self.objects.items()) if k == kind]


class FakeCache:
    """The reconciler's cache, read straight from a FakeKube (always up to date)."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def _get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.kube.objects.get((kind, namespace, name))

    def kubeadm_control_plane(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("KubeadmControlPlane", namespace, name)

    def cluster(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("Cluster", namespace, name)

    def cluster_machines(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]:
        return [
            o
            for (kind, ns, _), o in self.kube.objects.items()
            if kind == "Machine"
            and ns == namespace
            and o["spec"].get("clusterName") == cluster_name
        ]

    def kubeadm_config(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get("KubeadmConfig", namespace, name)

    def cluster_kubeadm_configs(self, namespace: str, cluster_name: str) -> list[Mapping[str, Any]]:
        return [
            o
            for (kind, ns, _), o in self.kube.objects.items()
            if kind == "KubeadmConfig"
            and ns == namespace
            and (o["metadata"].get("labels") or {}).get(labels.CLUSTER_NAME_LABEL) == cluster_name
        ]

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        found = self._get("Secret", namespace, name)
        if found is None:
            return None
        return {"metadata": copy.deepcopy(found["metadata"])}


class FakeEtcdClient:
    """One member's endpoint: answers status, records move-leader and remove-member calls."""

    def __init__(self, access: FakeEtcdAccess, endpoint: str) -> None:
        self.access = access
        self.endpoint = endpoint

    def _member(self) -> Member:
        for member in self.access.status.members:
            if any(self.endpoint in url for url in member.client_urls):
                return member
            if self.endpoint == f"kube-system/etcd-{member.name}:2379":  # reached at its Pod
                return member
        raise AssertionError(f"no member at {self.endpoint}")

    def status(self) -> MemberStatus:
        member = self._member()
        return MemberStatus(
            endpoint=self.endpoint,
            member_id=member.id,
            leader_id=self.access.leader,
            raft_term=1,
            raft_index=1,
            raft_applied_index=1,
            db_size=1,
            db_size_in_use=1,
            db_size_quota=0,
            is_learner=False,
            version="3.6.4",
            errors=(),
        )

    def move_leader(self, target: int) -> None:
        self.access.calls.append(("move_leader", target))
        self.access.leader = target

    def remove_member(self, member_id: int) -> None:
        self.access.calls.append(("remove_member", member_id))


class FakeEtcdAccess:
    def __init__(
        self, status: EtcdClusterStatus, endpoints: Sequence[str], calls: list[Any]
    ) -> None:
        self.status = status
        self.endpoints = tuple(endpoints)
        self.calls = calls
        self.leader = status.leader_id or 0

    def client(self, endpoint: str) -> Any:
        return FakeEtcdClient(self, endpoint)

    def clients(self) -> list[Any]:
        return [self.client(e) for e in self.endpoints]

    def cluster_status(self) -> EtcdClusterStatus:
        return self.status


class FakeWorkloadClient:
    def __init__(self, kube: FakeKube, answers: list[str] | None = None) -> None:
        self.api_client = kube
        self.dialer = DIRECT
        self.answers = answers if answers is not None else []
        self.recent = ClientReads()  # one client per reconcile here: nothing is shared

    def answered(self) -> None:
        self.answers.append("answered")


class FakeTracker:
    """Serves a workload FakeKube and an etcd status; or raises NotConnected."""

    def __init__(self) -> None:
        self.workload = FakeKube()
        self.etcd: EtcdClusterStatus | None = None
        self.not_connected: NotConnected | None = None
        self.evicted: list[ClusterKey] = []
        self.endpoints_seen: list[tuple[str, ...]] = []
        self.etcd_calls: list[Any] = []
        self.cluster_health: Any = None
        self.answers: list[str] = []

    def workload_client(self, cluster: ClusterKey) -> Any:
        if self.not_connected is not None:
            raise self.not_connected
        return FakeWorkloadClient(self.workload, self.answers)

    def etcd_access(self, cluster: ClusterKey, endpoints: Sequence[str]) -> Any:
        if self.not_connected is not None:
            raise self.not_connected
        self.endpoints_seen.append(tuple(endpoints))
        assert self.etcd is not None
        return FakeEtcdAccess(self.etcd, endpoints, self.etcd_calls)

    def evict(self, cluster: ClusterKey) -> bool:
        self.evicted.append(cluster)
        return True

    def health(self, cluster: ClusterKey) -> Any:
        return self.cluster_health


def etcd_status(
    names: Sequence[str], *, unhealthy: Sequence[str] = (), leader: int = 1
) -> EtcdClusterStatus:
    members = tuple(
        Member(id=i + 1, name=n, peer_urls=(), client_urls=(f"https://{n}:2379",))
        for i, n in enumerate(names)
    )
    health = tuple(
        MemberHealth(
            member_id=i + 1,
            name=n,
            endpoint=f"kube-system/etcd-{n}:2379",
            reachable=n not in unhealthy,
            status=None,
            alarms=(),
            errors=(
                (f"etcd status at kube-system/etcd-{n}:2379 failed: unreachable",)
                if n in unhealthy
                else ()
            ),
        )
        for i, n in enumerate(names)
    )
    return EtcdClusterStatus(
        leader_id=leader if names else None, members=members, health=health, alarms=(), errors=()
    )


def reconciler_on(
    kube: FakeKube, tracker: FakeTracker | None = None
) -> KubeadmControlPlaneReconciler:
    """A reconciler reading and writing `kube`, on the tests' clock, with no expectation wait."""
    return KubeadmControlPlaneReconciler(
        kube,  # type: ignore[arg-type]
        FakeCache(kube),
        tracker or FakeTracker(),
        recorder=EventRecorder(kube),  # type: ignore[arg-type]
        options=ReconcilerOptions(expectation_timeout=0.0),
        clock=lambda: NOW,
        workload_api=lambda api: api,
    )
