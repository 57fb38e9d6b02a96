"""Which Machines a rollout replaces, and the UpToDate messages users read."""

from __future__ import annotations

import copy
from datetime import timedelta

from kcp.api.objects import KubeadmControlPlaneView, MachineView
from kcp.controlplane.kubeadm_config import desired_kubeadm_config_spec
from kcp.controlplane.rollout import infra_cloned_from, machine_up_to_date
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
    config = desired_kubeadm_config_spec(
        cp["spec"]["kubeadmConfigSpec"], init=False, version="v1.34.4"
    )
    result = _check(cp, machine("a"), config)
    assert result.up_to_date
    assert result.reasons == ()


def test_version_change_reads_like_cluster_api() -> None:
    result = _check(kcp(version="v1.35.0"), machine("a", version="v1.34.4"))
    assert not result.up_to_date
    assert result.reasons == ("Version v1.34.4, v1.35.0 required",)
    assert result.message == "* Version v1.34.4, v1.35.0 required"


def test_kubeadm_config_change_reads_like_cluster_api() -> None:
    cp = kcp()
    config = desired_kubeadm_config_spec(
        cp["spec"]["kubeadmConfigSpec"], init=False, version="v1.34.4"
    )
    changed = copy.deepcopy(cp["spec"]["kubeadmConfigSpec"])
    changed["clusterConfiguration"]["apiServer"]["certSANs"].append("example.com")
    result = _check(kcp(spec={"kubeadmConfigSpec": changed}), machine("a"), config)
    assert result.reasons == ("KubeadmConfig is not up-to-date",)


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
