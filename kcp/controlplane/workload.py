"""The reconciler's view of one workload cluster: its Nodes, control-plane Pods and etcd.

Everything goes through the tracker: the workload API client it built from the
`<cluster>-kubeconfig` Secret, and etcd access with the cluster's cached
client key and certificate. The reconciler never generates a key nor opens a
connection itself. A cluster the tracker cannot serve right now raises the
tracker's `NotConnected` at once; the reconciler turns it into a requeue.

Each Machine's etcd member is reached, as Cluster API does, through a
port-forward via the workload API server to the Pod `kube-system/etcd-<node>`
port 2379 (endpoint `kube-system/etcd-<node>:2379`); with `--etcd-access=direct`
at the address kubeadm records on the etcd static Pod (the
`kubeadm.kubernetes.io/etcd.advertise-client-urls` annotation), falling back to
the Machine's internal address on etcd's client port.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from kcp.api.groups import CONFIG_MAP, NODE, POD
from kcp.api.objects import MachineView
from kcp.etcd import (
    Dialer,
    EtcdAccessMode,
    EtcdClient,
    EtcdClusterStatus,
    EtcdError,
    EtcdMemberNotFound,
    move_leader,
    normalize_endpoint,
    pod_endpoint,
)
from kcp.rest import Kube
from kcp.tracker.errors import NotConnected
from kcp.tracker.identity import ClusterKey

__all__ = [
    "ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION",
    "ETCD_CLIENT_PORT",
    "KUBEADM_CONFIG_MAP",
    "EtcdAccessLike",
    "NotConnected",
    "RecentReadsLike",
    "TrackerLike",
    "WorkloadCluster",
    "etcd_endpoints",
    "machine_etcd_endpoints",
]

ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
ETCD_CLIENT_PORT = 2379
CONTROL_PLANE_POD_SELECTOR = "tier=control-plane"
KUBE_SYSTEM = "kube-system"
KUBEADM_CONFIG_MAP = "kubeadm-config"
"""The ConfigMap in kube-system that `kubeadm init` uploads once the control plane is up."""


class EtcdAccessLike(Protocol):
    """What the tracker's `EtcdAccess` offers (clients with the cached certificate)."""

    @property
    def endpoints(self) -> tuple[str, ...]: ...

    def client(self, endpoint: str) -> EtcdClient: ...

    def clients(self) -> list[EtcdClient]: ...

    def cluster_status(self) -> EtcdClusterStatus: ...


T = TypeVar("T")


class RecentReadsLike(Protocol):
    """The tracker's `RecentReads`: answers the reconciles of one cluster share a while."""

    def get(self, what: str, max_age: float, read: Callable[[], T]) -> tuple[T, bool]: ...


class WorkloadClientLike(Protocol):
    @property
    def api_client(self) -> Any: ...

    @property
    def recent(self) -> RecentReadsLike: ...

    @property
    def dialer(self) -> Dialer:
        """Opens connections into the cluster: its Pods through a port-forward."""

    def answered(self) -> None:
        """A read just succeeded: the tracker may skip this interval's health probe."""


class TrackerLike(Protocol):
    """The tracker's surface the reconciler uses; every call raises `NotConnected` or answers."""

    def workload_client(self, cluster: ClusterKey) -> WorkloadClientLike: ...

    def etcd_access(self, cluster: ClusterKey, endpoints: Sequence[str]) -> EtcdAccessLike: ...

    def evict(self, cluster: ClusterKey) -> Any: ...

    def health(self, cluster: ClusterKey) -> ClusterHealthLike | None: ...


class ClusterHealthLike(Protocol):
    """What the reconciler reads of the tracker's health of a cluster."""

    @property
    def consecutive_failures(self) -> int: ...

    @property
    def last_error(self) -> str: ...


def machine_etcd_endpoints(
    pods: Mapping[str, Mapping[str, Any]],
    machines: Sequence[MachineView],
    *,
    access: EtcdAccessMode,
) -> dict[str, tuple[str, ...]]:
    """The endpoints of the etcd member on each Machine's Node, by Machine.

    `port-forward`: the Pod `kube-system/etcd-<node>:2379` of every Machine with a
    Node, whether or not its Pod is listed (a missing Pod then says so when dialled).
    `direct`: `host:port` from the etcd Pod's advertise-client-urls annotation when
    present, else the Machine's InternalIP (or first address) on port 2379.
    """
    found: dict[str, tuple[str, ...]] = {}
    for machine in machines:
        node = machine.node_name
        if not node:
            continue
        if access == "port-forward":
            found[machine.name] = (pod_endpoint(KUBE_SYSTEM, f"etcd-{node}", ETCD_CLIENT_PORT),)
            continue
        pod = pods.get(f"etcd-{node}") or {}
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        annotation = annotations.get(ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION)
        urls: list[str] = []
        if annotation:
            urls = [u.strip() for u in str(annotation).split(",") if u.strip()]
        else:
            addresses = machine.addresses
            internal = [a.address for a in addresses if a.type == "InternalIP"]
            chosen = internal[0] if internal else (addresses[0].address if addresses else None)
            if chosen:
                host = f"[{chosen}]" if ":" in chosen and not chosen.startswith("[") else chosen
                urls = [f"{host}:{ETCD_CLIENT_PORT}"]
        endpoints: list[str] = []
        for url in urls:
            try:
                endpoints.append(normalize_endpoint(url))
            except ValueError:
                continue
        if endpoints:
            found[machine.name] = tuple(endpoints)
    return found


def etcd_endpoints(
    pods: Mapping[str, Mapping[str, Any]],
    machines: Sequence[MachineView],
    *,
    access: EtcdAccessMode,
) -> tuple[str, ...]:
    """Every Machine's etcd client endpoints, in Machine order, without duplicates."""
    by_machine = machine_etcd_endpoints(pods, machines, access=access)
    return tuple(dict.fromkeys(e for endpoints in by_machine.values() for e in endpoints))


class WorkloadCluster:
    """One reconcile's access to one workload cluster (take a new one per reconcile).

    Requests carry no timeout of their own: the tracker's client applies its
    `api_timeout` to each, so a silent workload API server holds a worker for
    at most that long.
    """

    def __init__(
        self,
        tracker: TrackerLike,
        cluster: ClusterKey,
        *,
        api: Callable[[Any], Kube] = lambda client: Kube(client, timeout=None),
    ) -> None:
        self.tracker = tracker
        self.cluster = cluster
        self._make_api = api
        self._client: WorkloadClientLike | None = None
        self._kube: Kube | None = None
        self._read_now = False

    def _api(self) -> Kube:
        if self._kube is None:
            self._client = self.tracker.workload_client(self.cluster)
            self._kube = self._make_api(self._client.api_client)
        return self._kube

    def answered(self) -> None:
        """Tell the tracker its API server answered this reconcile's reads (not when every
        answer was one an earlier reconcile read)."""
        if self._client is not None and self._read_now:
            self._client.answered()

    def api(self) -> Kube:
        """The workload API server's client (raises `NotConnected`), for objects kubeadm made."""
        return self._api()

    def nodes(self, max_age: float = 0.0) -> dict[str, dict[str, Any]]:
        """Nodes by name, as listed less than `max_age` seconds ago by any reconcile of this
        cluster (0: now); raises `NotConnected`, `ApiError` or a network error.
        Callers must not change what they get: it may be shared."""
        nodes = self._shared("nodes", max_age, lambda: self._api().list(NODE))
        return {str((n.get("metadata") or {}).get("name")): n for n in nodes}

    def control_plane_pods(self, max_age: float = 0.0) -> dict[str, dict[str, Any]]:
        """kube-system Pods labelled `tier=control-plane`, by name (`max_age` as `nodes`)."""
        pods = self._shared(
            "control-plane-pods",
            max_age,
            lambda: self._api().list(POD, KUBE_SYSTEM, label_selector=CONTROL_PLANE_POD_SELECTOR),
        )
        return {str((p.get("metadata") or {}).get("name")): p for p in pods}

    def _shared(
        self, what: str, max_age: float, read: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        self._api()
        assert self._client is not None
        if max_age <= 0:
            answer, now = read(), True
        else:
            answer, now = self._client.recent.get(what, max_age, read)
        self._read_now = self._read_now or now
        return answer

    def has_kubeadm_config(self) -> bool:
        """Whether `kubeadm init` has completed: the `kubeadm-config` ConfigMap exists.

        Raises `NotConnected`, `ApiError` or a network error when it cannot tell.
        """
        return self._api().get(CONFIG_MAP, KUBE_SYSTEM, KUBEADM_CONFIG_MAP) is not None

    def dialer(self) -> Dialer:
        """Opens connections into the cluster (its Pods through the API server's port-forward).

        Raises `NotConnected` like every other access."""
        return self.tracker.workload_client(self.cluster).dialer

    def etcd(self, endpoints: Sequence[str]) -> EtcdAccessLike:
        return self.tracker.etcd_access(self.cluster, endpoints)

    def etcd_status(self, endpoints: Sequence[str]) -> EtcdClusterStatus:
        """Every member's view; never raises for an unhealthy etcd (only `NotConnected`)."""
        return self.etcd(endpoints).cluster_status()

    def move_leader(self, endpoints: Sequence[str], target_member_id: int) -> int:
        """Make `target_member_id` the leader; returns the previous leader's id."""
        return move_leader(self.etcd(endpoints).clients(), target_member_id)

    def remove_member(self, endpoints: Sequence[str], member_id: int, *, avoid: str = "") -> None:
        """Remove a member, asking the first other member that answers.

        `avoid` is the endpoint of the member being removed (asked last).
        """
        access = self.etcd(endpoints)
        ordered = sorted(access.endpoints or endpoints, key=lambda e: avoid and avoid in e)
        problems: list[str] = []
        for endpoint in ordered:
            try:
                access.client(endpoint).remove_member(member_id)
            except EtcdMemberNotFound:
                return
            except EtcdError as error:
                problems.append(str(error))
                continue
            return
        raise EtcdError(
            f"cannot remove etcd member {member_id:x}: " + ("; ".join(problems) or "no endpoint")
        )
