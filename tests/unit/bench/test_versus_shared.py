"""`kcp bench versus` on the cheap shared fleet: what the fleet writes for both KCPs, the
workload user's counts, the settings from the command line and the tables per size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from kcp import certs
from kcp.bench import versus, versus_shared
from kcp.bench.versus_fleet import CONTENDERS
from kcp.bench.versus_shared_fleet import split_port_forwards, workload_user
from kcp.bench.workload import CONTROL_PLANE_ROLE, SteadyWorkload, user_kubeconfig


def _workload(tmp_path: Path) -> SteadyWorkload:
    return SteadyWorkload(
        kube=None,
        pki_dir=tmp_path,
        kubeconfig=b"",
        server_host="127.0.0.1",
        server_port=6443,
        node_name="kcp-bench-etcd-abc123",
        node_address="127.0.5.1",
        etcd_client_url="https://127.0.5.1:2379",
    )


def _kcp() -> dict[str, Any]:
    return {
        "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "c0001", "uid": "kcp-uid"},
    }


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["conditions"]}


def test_a_machine_counts_for_cluster_api_as_its_core_would_report_it(tmp_path: Path) -> None:
    workload = _workload(tmp_path)
    machine = workload.machine("c0001", _kcp(), "v1.34.4")
    status = workload.machine_status()
    # Without a provider ID Cluster API's Available condition skips the Machine; its
    # replicas are counted by the Ready and Available conditions the core writes.
    assert machine["spec"]["providerID"]
    assert _conditions(status)["Ready"] == "True"
    assert _conditions(status)["Available"] == "True"
    assert status["nodeRef"] == {"name": workload.node_name}


def test_the_infrastructure_machine_says_it_was_cloned_from_the_clusters_template(
    tmp_path: Path,
) -> None:
    workload = _workload(tmp_path)
    machine = workload.machine("c0001", _kcp(), "v1.34.4")
    machine["metadata"]["uid"] = "machine-uid"
    infra = workload.infra_machine("c0001", machine)
    annotations = infra["metadata"]["annotations"]
    assert annotations["cluster.x-k8s.io/cloned-from-name"] == "c0001"
    assert (
        annotations["cluster.x-k8s.io/cloned-from-groupkind"]
        == "LocalMachineTemplate.infrastructure.cluster.x-k8s.io"
    )
    assert infra["metadata"]["ownerReferences"][0]["uid"] == "machine-uid"
    assert infra["spec"]["providerID"] == machine["spec"]["providerID"]
    assert CONTROL_PLANE_ROLE == "node-role.kubernetes.io/control-plane"


def test_the_workload_kubeconfig_is_a_user_of_its_own_and_kept_in_memory(tmp_path: Path) -> None:
    ca = certs.new_certificate_authority("test-ca", algorithm="ecdsa-p256")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(ca.key_pem)
    before = set(tmp_path.iterdir())
    document = yaml.safe_load(
        user_kubeconfig(tmp_path, "https://127.0.0.1:6443", "kcp-bench-capi-workload")
    )
    assert set(tmp_path.iterdir()) == before  # no key written anywhere
    assert document["users"][0]["name"] == "kcp-bench-capi-workload"
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_each_contender_has_a_workload_user_apart_from_its_management_one() -> None:
    users = {workload_user(c) for c in CONTENDERS.values()}
    assert len(users) == len(CONTENDERS)
    assert not users & {c.user for c in CONTENDERS.values()}
    assert workload_user(CONTENDERS["capi"]) == "kcp-bench-capi-workload"


def test_port_forwards_are_the_workload_users_portforward_requests() -> None:
    forwards, others = split_port_forwards(
        {"get pods/portforward 101": 7, "create pods/portforward": 1, "get /": 10, "list pods": 2}
    )
    assert (forwards, others) == (8, 12)


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    versus.add_arguments(parser)
    return parser.parse_args(list(extra))


def test_sizes_default_to_100_and_1000_and_quick_runs_none() -> None:
    assert versus.settings_from_args(_args()).shared_sizes == (100, 1000)
    assert versus.settings_from_args(_args("--quick")).shared_sizes == ()


def test_the_shared_part_can_run_alone() -> None:
    settings = versus.settings_from_args(_args("--shared-only", "--shared-sizes", "20"))
    assert settings.clusters == 0
    assert settings.shared_sizes == (20,)
    assert versus.settings_from_args(_args("--shared-sizes")).shared_sizes == ()


def test_timeouts_grow_with_the_fleet() -> None:
    assert versus_shared.SharedSettings.settle_timeout(1000) > (
        versus_shared.SharedSettings.settle_timeout(100)
    )
    assert versus_shared.SharedSettings.change_timeout(1000) >= 300


def _contender(name: str, cpu: float, *, failed: str | None = None) -> dict[str, Any]:
    phases: dict[str, Any] = {
        "settle": {"seconds_to_available": 10.0, "cpu_cores": cpu},
        "steady": {"cpu_cores": cpu / 10, "reconciles": 3},
        "change": {"status_latency_ms": {"p50": 100.0, "p99": 200.0}, "cpu_cores": cpu},
    }
    if failed:
        phases["change"] = {"error": failed}
    return {"contender": name, "phases": phases, "peak_rss_mib": 100.0}


def test_one_table_per_size_with_ratios_and_failures_listed() -> None:
    result = {
        "steady_seconds": 60.0,
        "fleet": versus_shared.SHARED,
        "points": [
            {
                "clusters": size,
                "wall_seconds": 100.0,
                "contenders": [
                    _contender("kcp", 0.2),
                    _contender("capi", 0.4, failed="PhaseError: 3 of 100 not observed"),
                ],
            }
            for size in (100, 1000)
        ],
    }
    text = versus_shared.summary(result)
    assert "100 clusters each on the cheap shared fleet" in text
    assert "1000 clusters each on the cheap shared fleet" in text
    assert "kcp/capi" in text
    assert "capi change: FAILED: PhaseError: 3 of 100 not observed" in text
    assert "0.50" in text  # settle CPU, kcp over capi
    assert "shared by every cluster" in text


def test_the_versus_summary_holds_the_shared_part_alone() -> None:
    shared = {"steady_seconds": 60.0, "fleet": "x", "points": []}
    assert "fleet: x" in versus.summary({"shared": shared})


def test_a_contender_done_is_summed_up_on_one_line() -> None:
    line = versus_shared.brief(_contender("capi", 0.4, failed="PhaseError: late"))
    assert line.startswith("capi: {")
    assert '"error": "PhaseError: late"' in line
    assert '"peak_rss_mib": 100.0' in line
