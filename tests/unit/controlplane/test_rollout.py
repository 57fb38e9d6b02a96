"""Which Machines a rollout replaces, and the UpToDate messages users read."""

from __future__ import annotations

import copy
from datetime import timedelta

from kcp.api.objects import KubeadmControlPlaneView, MachineView
from kcp.controlplane.rollout import (
    desired_kubeadm_config_spec,
    infra_cloned_from,
    kubeadm_config_matches,
    machine_up_to_date,
)
from tests.unit.controlplane.builders import NOW, kcp, machine, ts


def _check(kcp_obj: dict, machine_obj: dict, config: dict | None = None):  # type: ignore[no-untyped-def]
    return machine_up_to_date(
        KubeadmControlPlaneView(kcp_obj),
        MachineView(machine_obj),
        kubeadm_config_spec=config,
        infra_cloned_from=infra_cloned_from(machine_obj),
        now=NOW,
    )


def test_matching_machine_is_up_to_date() -> None:
    cp = kcp()
    config = desired_kubeadm_config_spec(cp["spec"]["kubeadmConfigSpec"], init=False)
    result = _check(cp, machine("a"), config)
    assert result.up_to_date
    assert result.reasons == ()


def test_version_change_reads_like_cluster_api() -> None:
    result = _check(kcp(version="v1.35.0"), machine("a", version="v1.34.4"))
    assert not result.up_to_date
    assert result.reasons == ("Version v1.34.4, v1.35.0 required",)
    assert result.message == "* Version v1.34.4, v1.35.0 required"


def test_kubeadm_config_change_is_detected_for_init_and_join_machines() -> None:
    cp = kcp()
    spec = cp["spec"]["kubeadmConfigSpec"]
    init = desired_kubeadm_config_spec(spec, init=True)
    join = desired_kubeadm_config_spec(spec, init=False)
    assert "joinConfiguration" not in init and "initConfiguration" not in join
    assert kubeadm_config_matches(init, spec)
    assert kubeadm_config_matches(join, spec)
    changed = copy.deepcopy(spec)
    changed["clusterConfiguration"]["apiServer"]["certSANs"].append("example.com")
    assert not kubeadm_config_matches(init, changed)
    assert not kubeadm_config_matches(join, changed)
    # A change to the join part only concerns joined Machines.
    join_only = copy.deepcopy(spec)
    join_only["joinConfiguration"]["nodeRegistration"]["name"] = "y"
    assert kubeadm_config_matches(init, join_only)
    assert not kubeadm_config_matches(join, join_only)
    result = _check(kcp(spec={"kubeadmConfigSpec": changed}), machine("a"), join)
    assert result.reasons == ("KubeadmConfig is not up-to-date",)


def test_empty_values_count_as_unset() -> None:
    spec = {"clusterConfiguration": {}, "files": [], "joinConfiguration": {"x": 1}}
    assert kubeadm_config_matches({"joinConfiguration": {"x": 1}}, spec)


def test_infrastructure_template_rotation() -> None:
    rotated = kcp(
        spec={
            "machineTemplate": {
                "spec": {
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "LocalMachineTemplate",
                        "name": "tmpl-v2",
                    }
                }
            }
        }
    )
    result = _check(rotated, machine("a"))
    assert result.reasons == ("LocalMachine is not up-to-date",)


def test_rollout_after_replaces_older_machines_once_passed() -> None:
    passed = kcp(spec={"rollout": {"after": ts(NOW - timedelta(minutes=1))}})
    assert _check(passed, machine("old", age=timedelta(minutes=30))).reasons == (
        "KubeadmControlPlane spec.rollout.after expired",
    )
    assert _check(passed, machine("new", age=timedelta(seconds=10))).up_to_date
    future = kcp(spec={"rollout": {"after": ts(NOW + timedelta(hours=1))}})
    assert _check(future, machine("old", age=timedelta(minutes=30))).up_to_date


def test_certificates_expiring_soon_trigger_rollout() -> None:
    cp = kcp(spec={"rollout": {"before": {"certificatesExpiryDays": 21}}})
    soon = machine("a")
    soon["status"]["certificatesExpiryDate"] = ts(NOW + timedelta(days=10))
    later = machine("b")
    later["status"]["certificatesExpiryDate"] = ts(NOW + timedelta(days=100))
    assert _check(cp, soon).reasons == ("Certificates will expire soon",)
    assert _check(cp, later).up_to_date
    assert _check(kcp(), soon).up_to_date  # not configured: never
