"""Reconciles of one cluster close together share its Node and Pod lists."""

from __future__ import annotations

from typing import Any

from kcp.api.groups import NODE
from kcp.controlplane.workload import WorkloadCluster
from kcp.etcd import DIRECT
from kcp.tracker.identity import ClusterKey
from kcp.tracker.recent import ClientReads, RecentReads


class CountingKube:
    def __init__(self) -> None:
        self.lists: list[str] = []

    def list(self, resource: Any, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        self.lists.append(resource.kind)
        return [{"metadata": {"name": f"{resource.kind.lower()}-{len(self.lists)}"}}]


class OneClient:
    """The tracker's one client of a cluster, as every reconcile of it gets it."""

    def __init__(self, clock: Any) -> None:
        self.api_client = CountingKube()
        self.recent = ClientReads(RecentReads(clock))
        self.dialer = DIRECT
        self.answers = 0

    def answered(self) -> None:
        self.answers += 1


class Tracker:
    def __init__(self, client: OneClient) -> None:
        self.client = client

    def workload_client(self, cluster: ClusterKey) -> OneClient:
        return self.client

    def etcd_access(self, cluster: ClusterKey, endpoints: Any) -> Any:
        raise NotImplementedError

    def evict(self, cluster: ClusterKey) -> Any:
        raise NotImplementedError

    def health(self, cluster: ClusterKey) -> Any:
        return None


def test_a_reconcile_within_max_age_reuses_the_lists_and_reports_no_answer() -> None:
    now = [10.0]
    client = OneClient(lambda: now[0])
    tracker = Tracker(client)
    key = ClusterKey("ns", "c1", "uid-1")

    def reconcile() -> tuple[dict[str, Any], dict[str, Any]]:
        workload = WorkloadCluster(tracker, key, api=lambda kube: kube)
        found = workload.nodes(max_age=2.0), workload.control_plane_pods(max_age=2.0)
        workload.answered()
        return found

    first = reconcile()
    now[0] += 1.0
    assert reconcile() == first
    assert client.api_client.lists == [NODE.kind, "Pod"]
    assert client.answers == 1, "a reconcile that read nothing says nothing of the server"
    now[0] += 1.5
    nodes, _pods = reconcile()
    assert nodes != first[0]
    assert client.api_client.lists == [NODE.kind, "Pod", NODE.kind, "Pod"]
    assert client.answers == 2


def test_max_age_zero_always_reads() -> None:
    client = OneClient(lambda: 0.0)
    workload = WorkloadCluster(Tracker(client), ClusterKey("ns", "c1", "u"), api=lambda k: k)
    workload.nodes()
    workload.nodes()
    assert client.api_client.lists == [NODE.kind, NODE.kind]
