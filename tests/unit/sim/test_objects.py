"""What the simulator writes: node and mirror pods, Machine phase and readiness, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kcp.sim
from kcp.etcd import Member
from kcp.rest import Resource
from kcp.sim.dev import apply_manifests
from kcp.sim.etcd_member import _initial_cluster
from kcp.sim.manifests import ClusterMaterial, cluster_objects
from kcp.sim.objects import merged_conditions
from kcp.sim.pki import load_cluster_pki, service_ip
from kcp.sim.workload import ContainerState, mirror_pod, node_object, pod_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_public_api() -> None:
    assert set(kcp.sim.__all__) == {
        "ANNOTATION_PREFIX",
        "ClusterMaterial",
        "Component",
        "Fault",
        "SimError",
        "SimOptions",
        "Simulator",
        "annotation_key",
        "cluster_objects",
        "machine_objects",
        "secret_object",
    }


def test_node_is_a_control_plane_node() -> None:
    node = node_object("m1", "127.1.2.3", "local:///ns/m1", "v1.34.4")
    assert node["spec"]["providerID"] == "local:///ns/m1"
    assert "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]
    assert node["spec"]["taints"][0]["effect"] == "NoSchedule"


def test_mirror_pods_carry_kubeadm_labels() -> None:
    pod = mirror_pod("etcd", "m1", "uid-1", "127.1.2.3", "v1.34.4")
    assert pod["metadata"]["name"] == "etcd-m1"
    assert pod["metadata"]["namespace"] == "kube-system"
    assert pod["metadata"]["labels"] == {"component": "etcd", "tier": "control-plane"}
    assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert pod["spec"]["nodeName"] == "m1"


def test_pod_status_follows_the_process() -> None:
    up = pod_status("etcd", "127.1.2.3", "v1.34.4", ContainerState(True, True, 0, NOW), NOW)
    assert up["phase"] == "Running"
    assert {c["type"]: c["status"] for c in up["conditions"]}["Ready"] == "True"
    down = pod_status(
        "etcd", "127.1.2.3", "v1.34.4", ContainerState(False, False, 2, NOW, "Error"), NOW
    )
    assert {c["type"]: c["status"] for c in down["conditions"]}["Ready"] == "False"
    container = down["containerStatuses"][0]
    assert container["restartCount"] == 2 and container["state"]["waiting"]["reason"] == "Error"


def _machine(gates: list[dict[str, str]], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"readinessGates": gates}, "status": {"conditions": conditions}}


def test_merged_conditions_keep_transition_times() -> None:
    earlier = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj = {
        "metadata": {"generation": 3},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "",
                    "lastTransitionTime": earlier,
                },
                {
                    "type": "Theirs",
                    "status": "False",
                    "reason": "X",
                    "message": "",
                    "lastTransitionTime": earlier,
                },
            ]
        },
    }
    same, changed = merged_conditions(obj, [("Ready", True, "Ready", "")], now=NOW)
    assert [c["type"] for c in same] == ["Ready"]  # only the simulator's own types
    assert same[0]["lastTransitionTime"] == earlier and same[0]["observedGeneration"] == 3
    flipped, changed = merged_conditions(obj, [("Ready", False, "NotReady", "down")], now=NOW)
    assert changed and flipped[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_initial_cluster_for_a_joiner() -> None:
    members = [
        Member(1, "m0", ("https://127.0.0.2:2380",), ()),
        Member(2, "", ("https://127.0.0.3:2380",), ()),
    ]
    assert (
        _initial_cluster(members, 2, "m1") == "m0=https://127.0.0.2:2380,m1=https://127.0.0.3:2380"
    )


def test_cluster_pki_loads_from_cluster_api_secrets() -> None:
    material = ClusterMaterial.new()
    secrets = {
        o["metadata"]["name"]: o["data"]
        for o in cluster_objects("ns", "c", material)
        if o["kind"] == "Secret"
    }
    assert set(secrets) == {"c-ca", "c-etcd", "c-proxy", "c-sa"}
    pki = load_cluster_pki("ns", "c", secrets.get)
    assert pki.ca == material.ca and pki.etcd_ca == material.etcd_ca
    with pytest.raises(kcp.sim.pki.PKINotReady, match="ns/c-etcd"):
        load_cluster_pki("ns", "c", lambda name: secrets.get(name) if name != "c-etcd" else None)
    assert service_ip("10.128.0.0/12") == "10.128.0.1"


class _FakeKube:
    def __init__(self) -> None:
        self.created: list[tuple[str, str | None, str]] = []

    def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> Any:
        self.created.append((resource.kind, namespace, body["metadata"]["name"]))
        return body


def test_samples_apply_into_the_namespace(tmp_path: Path) -> None:
    from kcp.sim.dev import SAMPLES_DIR

    kube = _FakeKube()
    created = apply_manifests(kube, SAMPLES_DIR, "demo")  # type: ignore[arg-type]
    kinds = {k for k, _, _ in kube.created}
    assert {"Cluster", "LocalCluster", "LocalMachineTemplate", "KubeadmControlPlane"} <= kinds
    assert all(ns == "demo" for _, ns, _ in kube.created)
    assert "Cluster/ha" in created and "Cluster/single" in created
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: x}\n"
    )
    with pytest.raises(ValueError, match="unknown kind"):
        apply_manifests(kube, tmp_path, "demo")  # type: ignore[arg-type]
