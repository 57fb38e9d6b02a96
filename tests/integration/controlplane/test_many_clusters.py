"""Twenty clusters reconciled over and over: one etcd client key each, never more.

No machine is simulated here (that would take twenty etcd members and API
servers): each Cluster reports its infrastructure ready at an endpoint nobody
serves, so kcp creates certificates, a kubeconfig and a first Machine, and then
asks the tracker about the cluster on every reconcile — which is what used to
cost Cluster API a key per reconcile.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from kcp.api import groups
from kcp.controlplane.controller import setup
from kcp.controlplane.reconciler import ReconcilerOptions
from kcp.rest import Kube
from kcp.runtime.manager import Manager
from kcp.runtime.metrics import new_registry
from kcp.runtime.options import ManagerOptions
from kcp.testing.controlplane import LocalControlPlane
from kcp.tracker.options import TrackerOptions
from kcp.tracker.tracker import Tracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CLUSTERS = 20
RECONCILES_EACH = 25


def _create_cluster(kube: Kube, namespace: str, name: str) -> None:
    kube.create(
        groups.LOCAL_MACHINE_TEMPLATE,
        namespace,
        {
            "apiVersion": groups.LOCAL_MACHINE_TEMPLATE.api_version,
            "kind": "LocalMachineTemplate",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {}}},
        },
    )
    cluster = kube.create(
        groups.CLUSTER,
        namespace,
        {
            "apiVersion": groups.CLUSTER.api_version,
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {
                # Nothing listens there: the tracker keeps failing to connect.
                "controlPlaneEndpoint": {"host": "127.0.0.1", "port": 9},
                "controlPlaneRef": {
                    "apiGroup": groups.CONTROLPLANE_GROUP,
                    "kind": "KubeadmControlPlane",
                    "name": name,
                },
            },
        },
    )
    kube.merge_patch(
        groups.CLUSTER,
        namespace,
        name,
        {"status": {"initialization": {"infrastructureProvisioned": True}}},
        subresource="status",
    )
    kube.create(
        groups.KUBEADM_CONTROL_PLANE,
        namespace,
        {
            "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
            "kind": "KubeadmControlPlane",
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": groups.CLUSTER.api_version,
                        "kind": "Cluster",
                        "name": name,
                        "uid": cluster["metadata"]["uid"],
                    }
                ],
            },
            "spec": {
                "replicas": 1,
                "version": "v1.34.4",
                "machineTemplate": {
                    "spec": {
                        "infrastructureRef": {
                            "apiGroup": groups.INFRASTRUCTURE_GROUP,
                            "kind": "LocalMachineTemplate",
                            "name": name,
                        }
                    }
                },
            },
        },
    )


def test_one_key_per_cluster_across_many_reconciles(
    control_plane: LocalControlPlane, namespace: str
) -> None:
    api = control_plane.api_client()
    kube = Kube(api)
    registry = new_registry(process_collectors=False)
    manager = Manager(
        ManagerOptions(
            health_addr="0",
            metrics_bind_addr="0",
            namespace=namespace,
            concurrency=4,
            kube_api_qps=200,
            kube_api_burst=300,
        ),
        api_client=api,
        registry=registry,
    )
    tracker = Tracker.for_api_client(
        api, TrackerOptions(probe_interval=2.0, probe_timeout=1.0), registry=registry
    )
    setup(
        manager,
        api,
        tracker,
        namespace=namespace,
        options=ReconcilerOptions(unhealthy_requeue=1.0, not_initialized_requeue=1.0),
    )
    manager.start()

    def sample(name: str, labels: dict[str, str]) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    def reconciles() -> float:
        return sum(
            sample(
                "controller_runtime_reconcile_total",
                {"controller": "kubeadmcontrolplane", "result": result},
            )
            for result in ("success", "requeue_after", "requeue", "error")
        )

    try:
        for index in range(CLUSTERS):
            _create_cluster(kube, namespace, f"c{index:02d}")
        started = time.monotonic()
        deadline = started + 180
        while time.monotonic() < deadline:
            if reconciles() >= CLUSTERS * RECONCILES_EACH and len(tracker.clusters()) == CLUSTERS:
                break
            time.sleep(1)
        keys = sample("kcp_tracker_keys_generated_total", {"algorithm": "rsa-2048"})
        errors = sample(
            "controller_runtime_reconcile_total",
            {"controller": "kubeadmcontrolplane", "result": "error"},
        )
        print(
            f"{reconciles():.0f} reconciles of {CLUSTERS} clusters in "
            f"{time.monotonic() - started:.0f}s, {keys:.0f} keys generated, {errors:.0f} errors"
        )
        assert len(tracker.clusters()) == CLUSTERS
        assert reconciles() >= CLUSTERS * RECONCILES_EACH
        assert keys == CLUSTERS
        machines: list[Any] = kube.list(groups.MACHINE, namespace)
        assert len(machines) == CLUSTERS  # one init Machine each, never a second
    finally:
        manager.stop(timeout=10)
        tracker.close()
