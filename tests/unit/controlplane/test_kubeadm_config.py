"""The KubeadmConfig kcp creates for a Machine, and when one no longer matches the KCP.

Next to Cluster API's CABPK, which writes into every KubeadmConfig's spec, the
comparison must see only what the user changed, or every Machine rolls out
for ever.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kcp.api.objects import KubeadmControlPlaneView
from kcp.controlplane.kubeadm_config import (
    KUBELET_LOCAL_MODE_FEATURE_GATE,
    desired_kubeadm_config_spec,
    is_join_config,
    kubeadm_config_matches,
)
from kcp.controlplane.machines import infra_machine_object, kubeadm_config_object
from tests.unit.controlplane.builders import as_cabpk_leaves_it, kcp

VERSION = "v1.34.4"
GATES = {KUBELET_LOCAL_MODE_FEATURE_GATE: True}


def _spec() -> dict[str, Any]:
    return {
        "clusterConfiguration": {"apiServer": {"certSANs": ["localhost"]}},
        "initConfiguration": {"nodeRegistration": {"name": "x"}},
        "joinConfiguration": {"nodeRegistration": {"name": "x"}},
    }


def _created(spec: dict[str, Any], *, init: bool) -> dict[str, Any]:
    return desired_kubeadm_config_spec(spec, init=init, version=VERSION)


def test_first_machine_inits_the_others_join_as_control_plane() -> None:
    init = _created(_spec(), init=True)
    join = _created(_spec(), init=False)
    assert init == {
        "clusterConfiguration": {"apiServer": {"certSANs": ["localhost"]}, "featureGates": GATES},
        "initConfiguration": {"nodeRegistration": {"name": "x"}},
    }
    assert join == {
        "clusterConfiguration": {"apiServer": {"certSANs": ["localhost"]}, "featureGates": GATES},
        "joinConfiguration": {"nodeRegistration": {"name": "x"}, "controlPlane": {}},
    }
    assert not is_join_config(init) and is_join_config(join)
    # A KCP without any join part still makes a join config CABPK recognises.
    assert _created({}, init=False) == {
        "clusterConfiguration": {"featureGates": GATES},
        "joinConfiguration": {"controlPlane": {}},
    }


def test_the_kubelet_local_mode_gate_follows_cluster_apis_version_range() -> None:
    def gates(version: str, spec: dict[str, Any] | None = None) -> Any:
        created = desired_kubeadm_config_spec(spec or {}, init=True, version=version)
        return created.get("clusterConfiguration", {}).get("featureGates")

    assert gates("v1.30.9") is None
    assert gates("v1.31.0") == GATES
    assert gates("1.35.2") == GATES
    assert gates("v1.36.0") is None
    assert gates("v1.36.0-alpha.1") is None  # pre-releases count as their release
    off = {"clusterConfiguration": {"featureGates": {KUBELET_LOCAL_MODE_FEATURE_GATE: False}}}
    assert gates("v1.34.4", off) == {KUBELET_LOCAL_MODE_FEATURE_GATE: False}


def test_empty_objects_are_not_created_but_empty_taints_are() -> None:
    spec = {
        "initConfiguration": {},  # the real CRD rejects empty objects (minProperties: 1)
        "joinConfiguration": {"nodeRegistration": {"taints": []}},
        "files": [],
    }
    assert _created(spec, init=True) == {"clusterConfiguration": {"featureGates": GATES}}
    assert _created(spec, init=False)["joinConfiguration"] == {
        "nodeRegistration": {"taints": []},
        "controlPlane": {},
    }


def test_the_configs_kcp_creates_match() -> None:
    assert kubeadm_config_matches(_created(_spec(), init=True), _spec(), version=VERSION)
    assert kubeadm_config_matches(_created(_spec(), init=False), _spec(), version=VERSION)


@pytest.mark.parametrize("init", [True, False], ids=["init", "join"])
def test_what_cabpk_writes_back_is_not_a_change(init: bool) -> None:
    written = as_cabpk_leaves_it(_created(_spec(), init=init))
    assert written["clusterConfiguration"]["controlPlaneEndpoint"] == "127.0.0.1:6443"
    assert kubeadm_config_matches(written, _spec(), version=VERSION)


def test_dns_health_check_timeout_and_older_defaults_are_not_changes() -> None:
    current = as_cabpk_leaves_it(_created(_spec(), init=False))
    current["clusterConfiguration"]["dns"] = {"imageTag": "v1.12.0"}
    current["joinConfiguration"]["timeouts"] = {"controlPlaneComponentHealthCheckSeconds": 240}
    current["format"] = "cloud-config"
    current["joinConfiguration"]["nodeRegistration"]["imagePullPolicy"] = "IfNotPresent"
    assert kubeadm_config_matches(current, _spec(), version=VERSION)
    init = _created(_spec(), init=True)
    init["initConfiguration"]["timeouts"] = {"controlPlaneComponentHealthCheckSeconds": 240}
    assert kubeadm_config_matches(init, _spec(), version=VERSION)
    # Discovery set on the KCP applies to the next join; it rolls nothing out either.
    spec = _spec()
    spec["joinConfiguration"]["discovery"] = {"timeoutSeconds": 60}
    assert kubeadm_config_matches(current, spec, version=VERSION)


def test_user_changes_still_roll_out() -> None:
    init = as_cabpk_leaves_it(_created(_spec(), init=True))
    join = as_cabpk_leaves_it(_created(_spec(), init=False))
    sans = _spec()
    sans["clusterConfiguration"]["apiServer"]["certSANs"].append("example.com")
    assert not kubeadm_config_matches(init, sans, version=VERSION)
    assert not kubeadm_config_matches(join, sans, version=VERSION)
    # The join part concerns joined Machines only.
    join_only = _spec()
    join_only["joinConfiguration"]["nodeRegistration"]["name"] = "y"
    assert kubeadm_config_matches(init, join_only, version=VERSION)
    assert not kubeadm_config_matches(join, join_only, version=VERSION)
    # The init Machine, changed in both parts alike, is compared as the join it equals.
    both = copy.deepcopy(join_only)
    both["initConfiguration"]["nodeRegistration"]["name"] = "y"
    assert not kubeadm_config_matches(init, both, version=VERSION)
    # "No taints" is not kubeadm's default taint.
    untainted = _spec()
    untainted["joinConfiguration"]["nodeRegistration"]["taints"] = []
    assert not kubeadm_config_matches(join, untainted, version=VERSION)
    # Leaving the version range drops the feature gate from what kcp would create.
    assert not kubeadm_config_matches(join, _spec(), version="v1.36.0")


def test_configs_cluster_api_created_match() -> None:
    """As Cluster API v1.13's KCP creates them, and as v1.11 left them (join told by kubelet
    extra args, no `controlPlane`): a takeover by kcp rolls nothing out."""
    spec = _spec()
    for part in ("initConfiguration", "joinConfiguration"):
        spec[part]["nodeRegistration"]["kubeletExtraArgs"] = [
            {"name": "cloud-provider", "value": "external"}
        ]
    capi_join = as_cabpk_leaves_it(_created(spec, init=False))
    assert kubeadm_config_matches(capi_join, spec, version=VERSION)
    legacy = copy.deepcopy(capi_join)
    del legacy["joinConfiguration"]["controlPlane"]
    assert is_join_config(legacy)
    assert kubeadm_config_matches(legacy, spec, version=VERSION)


def test_kubeadm_config_and_infrastructure_machine_are_owned_not_controlled() -> None:
    """Cluster API's Machine controller makes the Machine their controller; kcp only owns them."""
    view = KubeadmControlPlaneView(kcp())
    config = kubeadm_config_object(view, "c1", "cp-abcde", init=False)
    template = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
        "kind": "LocalMachineTemplate",
        "spec": {"template": {"spec": {}}},
    }
    infra = infra_machine_object(view, "c1", "cp-abcde", template)
    for obj in (config, infra):
        [ref] = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == ("KubeadmControlPlane", "kcp-uid-1")
        assert not ref.get("controller")
    assert config["spec"]["joinConfiguration"]["controlPlane"] == {}
    assert config["spec"]["clusterConfiguration"]["featureGates"] == GATES
