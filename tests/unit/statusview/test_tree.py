"""`kcp status` trees from dict fixtures: what a user reads for a healthy and a sick cluster."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from kcp.statusview import ClusterObjects, build_tree, render
from kcp.statusview.cli import add_arguments

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0 = "2026-01-01T11:55:00Z"


def _cond(kind: str, status: str, message: str = "", reason: str = "R") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T0,
    }


def _machine(
    name: str, *, ready: str = "True", etcd: str = "True", msg: str = ""
) -> dict[str, Any]:
    return {
        "kind": "Machine",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {
                "cluster.x-k8s.io/cluster-name": "ha",
                "cluster.x-k8s.io/control-plane": "",
                "cluster.x-k8s.io/control-plane-name": "ha-control-plane",
            },
        },
        "spec": {"clusterName": "ha", "version": "v1.34.4", "failureDomain": "fd1"},
        "status": {
            "phase": "Running",
            "nodeRef": {"name": name},
            "addresses": [{"type": "InternalIP", "address": "127.9.9.9"}],
            "conditions": [
                _cond("Ready", ready),
                _cond("APIServerPodHealthy", "True"),
                _cond("EtcdMemberHealthy", etcd, msg),
            ],
        },
    }


def _fixture(*, sick: bool = False) -> ClusterObjects:
    cluster = {
        "kind": "Cluster",
        "metadata": {"name": "ha", "namespace": "ns"},
        "spec": {"controlPlaneEndpoint": {"host": "127.1.2.3", "port": 6443}},
        "status": {
            "initialization": {"infrastructureProvisioned": True, "controlPlaneInitialized": True},
            "conditions": [_cond("Available", "False" if sick else "True")],
        },
    }
    kcp = {
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "ha-control-plane", "namespace": "ns"},
        "spec": {"replicas": 3, "version": "v1.34.4"},
        "status": {
            "replicas": 3,
            "readyReplicas": 2 if sick else 3,
            "availableReplicas": 2 if sick else 3,
            "upToDateReplicas": 3,
            "conditions": [
                _cond("Available", "True"),
                _cond(
                    "EtcdClusterHealthy",
                    "False" if sick else "True",
                    "etcd member ha-2 is unreachable" if sick else "",
                ),
                _cond("ScalingUp", "False"),
            ],
        },
    }
    infra = {
        "kind": "LocalCluster",
        "metadata": {"name": "ha"},
        "status": {"initialization": {"provisioned": True}, "conditions": [_cond("Ready", "True")]},
    }
    machines = [_machine("ha-0"), _machine("ha-1")]
    machines.append(
        _machine("ha-2", ready="False", etcd="False", msg="member unreachable")
        if sick
        else _machine("ha-2")
    )
    worker = _machine("worker-0")
    worker["metadata"]["labels"] = {"cluster.x-k8s.io/cluster-name": "ha"}
    return ClusterObjects(cluster, infra, kcp, [*reversed(machines), worker])


def test_healthy_cluster_tree_nests_machines_under_their_control_plane() -> None:
    text = render([build_tree(_fixture())], now=NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "READY", "SINCE", "DETAILS"]
    assert lines[1].startswith("Cluster/ha ")
    assert "endpoint 127.1.2.3:6443" in lines[1]
    assert "control plane initialized" in lines[1]
    assert "True" in lines[1] and "5m" in lines[1]
    assert any(line.startswith("├─LocalCluster/ha") for line in lines)
    cp = next(line for line in lines if "KubeadmControlPlane/ha-control-plane" in line)
    assert "3/3 ready" in cp and "3 up-to-date" in cp and "v1.34.4" in cp
    machines = [line for line in lines if "Machine/ha-" in line]
    assert [m.split("─", 1)[1].split()[0] for m in machines] == [
        "Machine/ha-0",
        "Machine/ha-1",
        "Machine/ha-2",
    ]
    # Control-plane machines are drawn one level below the KubeadmControlPlane.
    assert [m[:4] for m in machines] == ["│ ├─", "│ ├─", "│ └─"]
    assert "Running" in machines[0] and "node ha-0" in machines[0] and "fd1" in machines[0]
    # A worker (no control-plane label) hangs off the Cluster, not the control plane.
    assert any(line.startswith("└─Machine/worker-0") for line in lines)
    # A False negative-polarity condition (ScalingUp) is not shown; True ones are badges.
    assert "ScalingUp" not in text
    assert "Available ✓" in text and "EtcdClusterHealthy ✓" in text
    assert "etcd-member ✓" in text


def test_sick_cluster_explains_what_is_wrong() -> None:
    text = render([build_tree(_fixture(sick=True))], now=NOW)
    assert "2/3 ready" in text
    assert "EtcdClusterHealthy ✗" in text
    assert "EtcdClusterHealthy: etcd member ha-2 is unreachable" in text
    machine = next(line for line in text.splitlines() if "Machine/ha-2" in line)
    assert " False " in machine
    assert "etcd-member: member unreachable" in text


def test_cluster_without_status_renders() -> None:
    bare = ClusterObjects({"kind": "Cluster", "metadata": {"name": "new", "namespace": "ns"}})
    text = render([build_tree(bare)], now=NOW)
    assert "Cluster/new" in text
    assert "no endpoint yet" in text and "control plane not initialized" in text


def test_color_marks_ready_column() -> None:
    text = render([build_tree(_fixture(sick=True))], now=NOW, color=True)
    assert "\033[31mFalse" in text and "\033[32mTrue" in text


def test_cli_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["-A", "--kubeconfig", "k", "ha"])
    assert args.all_namespaces and args.kubeconfig == "k" and args.cluster == "ha"
    args = parser.parse_args(["-n", "ns"])
    assert args.namespace == "ns" and args.cluster is None
