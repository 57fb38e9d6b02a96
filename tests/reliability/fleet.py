"""The suite's clusters and what it checks about them.

`Fleet` is the session's management-cluster view: a namespace where the
simulator turns Machines into real etcd members and API servers, a namespace
without simulator for inputs that fail before any Machine runs, and one `kcp
run` (as the ServiceAccount bound to `config/rbac/`) reconciling both through
`--watch-filter`. The invariant checks live here too: CA Secrets never
replaced, etcd members equal to Machines, quorum never lost, a bystander
cluster that keeps reconciling.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.etcd import EtcdTimeouts, cluster_status
from kcp.rest import ApiError, Kube
from tests.reliability.harness import KcpProcess

VERSION = "v1.34.4"
CA_SUFFIXES = ("ca", "etcd", "proxy", "sa")
DEAD_PORT = 1
"""A control-plane endpoint port on which nothing listens (connections are refused)."""
QUICK = EtcdTimeouts(dial=2.0, call=2.0)


TRANSIENT = (ApiError, OSError, urllib3.exceptions.HTTPError)
"""What a call to an API server or etcd raises while it restarts or is unreachable."""


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except TRANSIENT as error:  # a restarting API server answers nothing
            last = f"{type(error).__name__}: {error}"
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")
        time.sleep(interval)


def kcp_name(cluster: str) -> str:
    return f"{cluster}-control-plane"


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    return (c.get_condition(obj, kind) if obj else None) or {}


def cluster_objects(
    namespace: str,
    name: str,
    *,
    watch: str | None,
    replicas: int = 1,
    version: str = VERSION,
    kcp: str | None = None,
    kcp_spec: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
    with_template: bool = True,
) -> list[tuple[Any, dict[str, Any]]]:
    """(resource, object) pairs of one cluster on the local provider, in creation order.

    `kcp_spec` replaces the KubeadmControlPlane's spec; `template` the
    LocalMachineTemplate (None: a plain one named like the control plane).
    """
    control_plane = kcp or kcp_name(name)
    watch_labels = {labels.WATCH_LABEL: watch} if watch else {}
    spec = kcp_spec or {
        "replicas": replicas,
        "version": version,
        "machineTemplate": {
            "spec": {
                "infrastructureRef": {
                    "apiGroup": groups.INFRASTRUCTURE_GROUP,
                    "kind": groups.LOCAL_MACHINE_TEMPLATE.kind,
                    "name": control_plane[:253],
                }
            }
        },
    }
    objects: list[tuple[Any, dict[str, Any]]] = [
        (
            groups.CLUSTER,
            {
                "apiVersion": groups.CLUSTER.api_version,
                "kind": "Cluster",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(watch_labels)},
                "spec": {
                    "clusterNetwork": {"services": {"cidrBlocks": ["10.128.0.0/12"]}},
                    "infrastructureRef": {
                        "apiGroup": groups.INFRASTRUCTURE_GROUP,
                        "kind": groups.LOCAL_CLUSTER.kind,
                        "name": name,
                    },
                    "controlPlaneRef": {
                        "apiGroup": groups.CONTROLPLANE_GROUP,
                        "kind": groups.KUBEADM_CONTROL_PLANE.kind,
                        "name": control_plane,
                    },
                },
            },
        ),
        (
            groups.LOCAL_CLUSTER,
            {
                "apiVersion": groups.LOCAL_CLUSTER.api_version,
                "kind": "LocalCluster",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {},
            },
        ),
    ]
    if with_template:
        objects.append(
            (
                groups.LOCAL_MACHINE_TEMPLATE,
                template
                or {
                    "apiVersion": groups.LOCAL_MACHINE_TEMPLATE.api_version,
                    "kind": "LocalMachineTemplate",
                    "metadata": {"name": control_plane[:253], "namespace": namespace},
                    "spec": {"template": {"spec": {}}},
                },
            )
        )
    objects.append(
        (
            groups.KUBEADM_CONTROL_PLANE,
            {
                "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
                "kind": "KubeadmControlPlane",
                "metadata": {
                    "name": control_plane,
                    "namespace": namespace,
                    "labels": dict(watch_labels),
                },
                "spec": spec,
            },
        )
    )
    return objects


def secret_body(
    namespace: str, name: str, cluster: str, data: dict[str, bytes], *, kind: str | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind or "cluster.x-k8s.io/secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {labels.CLUSTER_NAME_LABEL: cluster},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


@dataclass
class CASnapshot:
    """uid and a hash of the data of a cluster's four CA Secrets, taken once they exist."""

    cluster: str
    secrets: dict[str, tuple[str, str]]

    @staticmethod
    def digest(secret: dict[str, Any]) -> str:
        data = secret.get("data") or {}
        return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()


@dataclass
class Fleet:
    """The session's clusters, simulator and controller (see the module docstring)."""

    watch: str
    namespace: str
    bad_namespace: str
    kube: Kube
    sim: Any
    kcp: KcpProcess
    plane: Any
    work_dir: Path
    system_namespace: str
    snapshots: dict[str, CASnapshot] = field(default_factory=dict)
    ca_checks: int = 0
    orphans: set[str] = field(default_factory=set)
    restarts: list[tuple[float, float]] = field(default_factory=list)
    """Wall-clock (start, end) of every management API server restart."""

    # -- objects ---------------------------------------------------------------------------

    def create(self, objects: list[tuple[Any, dict[str, Any]]]) -> None:
        for resource, obj in objects:
            self.kube.create(resource, obj["metadata"]["namespace"], obj)

    def add_cluster(self, name: str, replicas: int = 1) -> None:
        self.create(cluster_objects(self.namespace, name, watch=self.watch, replicas=replicas))

    def add_unsimulated_cluster(
        self,
        name: str,
        *,
        infrastructure: bool = False,
        secrets: list[dict[str, Any]] | None = None,
        namespace: str | None = None,
        watch: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """A cluster in a namespace the simulator does not watch; returns its KCP.

        The test plays Cluster API core: it sets the KubeadmControlPlane's owner
        reference and, with `infrastructure`, marks the infrastructure provisioned
        with an endpoint on which nothing listens (Machines get created, never run).
        `secrets` are created first (user-provided material). Without `watch` the
        objects lack the fleet's watch-filter label (the fleet's kcp ignores them).
        """
        namespace = namespace or self.bad_namespace
        for secret in secrets or []:
            self.kube.create(groups.SECRET, namespace, secret)
        objects = cluster_objects(namespace, name, watch=self.watch if watch else None, **options)
        cluster = objects[0][1]
        if infrastructure:
            cluster["spec"]["controlPlaneEndpoint"] = {"host": "127.0.0.1", "port": DEAD_PORT}
        created = self.kube.create(groups.CLUSTER, namespace, cluster)
        if infrastructure:
            self.kube.merge_patch(
                groups.CLUSTER,
                namespace,
                name,
                {"status": {"initialization": {"infrastructureProvisioned": True}}},
                subresource="status",
            )
        kcp_obj: dict[str, Any] = {}
        for resource, obj in objects[1:]:
            if resource is groups.KUBEADM_CONTROL_PLANE:
                obj["metadata"]["ownerReferences"] = [
                    {
                        "apiVersion": groups.CLUSTER.api_version,
                        "kind": "Cluster",
                        "name": name,
                        "uid": created["metadata"]["uid"],
                    }
                ]
                kcp_obj = self.kube.create(resource, namespace, obj)
            else:
                self.kube.create(resource, namespace, obj)
        return kcp_obj

    def kcp_object(self, cluster: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.kube.get(
            groups.KUBEADM_CONTROL_PLANE, namespace or self.namespace, kcp_name(cluster)
        )

    def machines(self, cluster: str) -> list[dict[str, Any]]:
        return self.kube.list(
            groups.MACHINE, self.namespace, label_selector=labels.control_plane_selector(cluster)
        )

    def scale(self, cluster: str, replicas: int) -> None:
        self.kube.merge_patch(
            groups.KUBEADM_CONTROL_PLANE,
            self.namespace,
            kcp_name(cluster),
            {"spec": {"replicas": replicas}},
        )

    def etcd_status(self, cluster: str) -> Any:
        sim_cluster = self.sim.cluster(self.namespace, cluster)
        if sim_cluster is None or sim_cluster.etcd_tls is None:
            return None
        endpoints = sim_cluster.etcd_endpoints()
        if not endpoints:
            return None
        return cluster_status(endpoints, tls=sim_cluster.etcd_tls, timeouts=QUICK, transport="grpc")

    def etcd_members(self, cluster: str) -> list[str]:
        status = self.etcd_status(cluster)
        return sorted(m.name for m in status.members) if status is not None else []

    def available(self, cluster: str, replicas: int, version: str | None = None) -> Any:
        """The etcd member names once the cluster is Available with exactly `replicas`."""
        obj = self.kcp_object(cluster)
        status = (obj or {}).get("status") or {}
        ready = (
            condition(obj, c.AVAILABLE).get("status") == c.TRUE
            and condition(obj, c.ETCD_CLUSTER_HEALTHY).get("status") == c.TRUE
            and condition(obj, c.CONTROL_PLANE_COMPONENTS_HEALTHY).get("status") == c.TRUE
            and status.get("replicas") == replicas
            and status.get("readyReplicas") == replicas
            and status.get("upToDateReplicas") == replicas
            and (version is None or status.get("version") == version)
        )
        if not ready:
            return False
        machines = self.machines(cluster)
        if len(machines) != replicas or any(
            m["metadata"].get("deletionTimestamp") for m in machines
        ):
            return False
        members = self.etcd_members(cluster)
        return members if len(members) == replicas else False

    def wait_available(
        self, cluster: str, replicas: int, timeout: float, version: str | None = None
    ) -> list[str]:
        members: list[str] = wait_for(
            f"{cluster} to be Available with {replicas} machine(s) and etcd member(s)",
            lambda: self.available(cluster, replicas, version),
            timeout,
            interval=1.0,
        )
        return members

    def summary(self, cluster: str) -> str:
        obj = self.kcp_object(cluster) or {}
        status = obj.get("status") or {}
        conds = {
            x["type"]: f"{x['status']}:{x.get('message', '')[:120]}"
            for x in status.get("conditions") or []
            if x["status"] != c.TRUE
        }
        counts = {k: status.get(k) for k in ("replicas", "readyReplicas", "upToDateReplicas")}
        return f"{cluster}: {counts} not-True conditions: {conds}"

    def restart_management(self) -> float:
        """Restart the management API server (on the calling thread, which must outlive it:
        the test control plane's processes die with the thread that started them)."""
        started = time.time()
        self.plane.restart_apiserver()
        self.restarts.append((started, time.time()))
        return time.time() - started

    # -- invariants ------------------------------------------------------------------------

    def snapshot_cas(self, cluster: str, namespace: str | None = None) -> CASnapshot:
        namespace = namespace or self.namespace
        secrets: dict[str, tuple[str, str]] = {}
        for suffix in CA_SUFFIXES:
            name = f"{cluster}-{suffix}"
            secret = wait_for(
                f"Secret {name}", lambda n=name: self.kube.get(groups.SECRET, namespace, n), 60
            )
            secrets[name] = (secret["metadata"]["uid"], CASnapshot.digest(secret))
        snapshot = CASnapshot(cluster, secrets)
        self.snapshots[f"{namespace}/{cluster}"] = snapshot
        return snapshot

    def assert_cas_unchanged(self) -> None:
        """No CA Secret of any snapshotted cluster was replaced (uid) or rewritten (data)."""
        for key, snapshot in self.snapshots.items():
            namespace = key.split("/", 1)[0]
            for name, (uid, digest) in snapshot.secrets.items():
                secret = self.kube.get(groups.SECRET, namespace, name)
                assert secret is not None, f"CA Secret {namespace}/{name} disappeared"
                assert secret["metadata"]["uid"] == uid, f"CA Secret {name} was re-created"
                assert CASnapshot.digest(secret) == digest, f"CA Secret {name} was rewritten"
                self.ca_checks += 1

    def assert_no_orphans(self, cluster: str, namespace: str | None = None) -> None:
        """Every etcd member has a Machine and every Machine a member, a KubeadmConfig and an
        infrastructure machine. KubeadmConfigs and LocalMachines that no Machine references
        are collected in `orphans` (see the failpoint test in test_faults.py)."""
        namespace = namespace or self.namespace
        machines = self.machines(cluster)
        names = sorted(m["metadata"]["name"] for m in machines)
        members = self.etcd_members(cluster)
        assert members == names, f"{cluster}: etcd members {members} != Machines {names}"
        obj = self.kcp_object(cluster) or {}
        assert obj.get("status", {}).get("replicas") == len(machines), self.summary(cluster)
        self.orphans.update(unreferenced(self.kube, namespace, cluster))
        for resource in (groups.KUBEADM_CONFIG, groups.LOCAL_MACHINE):
            present = {
                o["metadata"]["name"]
                for o in self.kube.list(
                    resource, namespace, label_selector=f"{labels.CLUSTER_NAME_LABEL}={cluster}"
                )
            }
            missing = set(names) - present
            assert not missing, f"{cluster}: Machines {sorted(missing)} have no {resource.kind}"

    def touch(self, cluster: str, namespace: str | None = None) -> int:
        """Change the control plane's spec (a Machine template annotation); its new generation."""
        patched = self.kube.merge_patch(
            groups.KUBEADM_CONTROL_PLANE,
            namespace or self.namespace,
            kcp_name(cluster),
            {
                "spec": {
                    "machineTemplate": {
                        "metadata": {"annotations": {"reliability/touched": str(time.time_ns())}}
                    }
                }
            },
        )
        return int(patched["metadata"]["generation"])

    def observed(self, cluster: str, generation: int, timeout: float) -> float:
        """Seconds until the control plane's status.observedGeneration reached `generation`."""
        started = time.monotonic()
        wait_for(
            f"{cluster} to observe generation {generation}",
            lambda: (
                ((self.kcp_object(cluster) or {}).get("status") or {}).get("observedGeneration", 0)
                >= generation
            ),
            timeout,
            interval=0.2,
        )
        return time.monotonic() - started


def unreferenced(kube: Kube, namespace: str, cluster: str) -> set[str]:
    """`Kind/name` of the cluster's KubeadmConfigs and LocalMachines no Machine references."""
    selector = f"{labels.CLUSTER_NAME_LABEL}={cluster}"
    referenced: set[str] = set()
    for machine in kube.list(groups.MACHINE, namespace, label_selector=selector):
        spec = machine.get("spec") or {}
        for ref in ((spec.get("bootstrap") or {}).get("configRef"), spec.get("infrastructureRef")):
            if ref:
                referenced.add(f"{ref.get('kind')}/{ref.get('name')}")
    found: set[str] = set()
    for resource in (groups.KUBEADM_CONFIG, groups.LOCAL_MACHINE):
        for obj in kube.list(resource, namespace, label_selector=selector):
            key = f"{resource.kind}/{obj['metadata']['name']}"
            if key not in referenced and not obj["metadata"].get("deletionTimestamp"):
                found.add(f"{namespace}/{key}")
    return found


class QuorumWatch:
    """Samples a cluster's etcd twice a second; records every sample without a quorum.

    A sample taken while a voting member has been added but has not started yet
    (etcd lists it without a name), or while a member this watch saw as a learner
    less than `PROMOTION_GRACE` seconds ago is not answering yet, goes to
    `joining` instead of `violations`: that window belongs to the join procedure
    (kubeadm's, played by the simulator), not to anything kcp decides.
    """

    PROMOTION_GRACE = 10.0

    def __init__(self, fleet: Fleet, cluster: str) -> None:
        self.fleet = fleet
        self.cluster = cluster
        self.samples = 0
        self.violations: list[str] = []
        self.joining: list[str] = []
        self.max_voting = 0
        self._learner_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quorum-watch", daemon=True)

    def __enter__(self) -> QuorumWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):
                self.sample()

    def sample(self) -> None:
        status = self.fleet.etcd_status(self.cluster)
        if status is None:
            return
        now = time.monotonic()
        for member in status.members:
            if member.is_learner:
                self._learner_seen[member.id] = now
        voting = [m for m in status.members if not m.is_learner]
        if not voting:
            return
        ids = {m.id for m in voting}
        healthy = [
            h
            for h in status.health
            if h.member_id in ids and h.status is not None and h.status.has_leader
        ]
        healthy_ids = {h.member_id for h in healthy}
        just_promoted = any(
            now - self._learner_seen.get(m.id, -self.PROMOTION_GRACE) < self.PROMOTION_GRACE
            for m in voting
            if m.id not in healthy_ids
        )
        self.samples += 1
        self.max_voting = max(self.max_voting, len(voting))
        if len(healthy) >= len(voting) // 2 + 1:
            return
        text = (
            f"{time.strftime('%H:%M:%S')}: {len(healthy)} of {len(voting)} voting members "
            f"({[m.name or '<not started>' for m in voting]}) see a leader; "
            f"{[(h.name, h.errors) for h in status.health if h.errors]}"
        )
        if just_promoted or any(not m.name for m in voting):
            self.joining.append(text)
        else:
            self.violations.append(text)


@contextlib.contextmanager
def quorum_watch(fleet: Fleet, cluster: str) -> Iterator[QuorumWatch]:
    with QuorumWatch(fleet, cluster) as watch:
        yield watch
