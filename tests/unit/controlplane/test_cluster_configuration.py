"""kubeadm-config's ClusterConfiguration brought to a KubeadmControlPlane, as Cluster API does."""

from __future__ import annotations

from typing import Any

import pytest

from kcp.controlplane.cluster_configuration import (
    ClusterConfigurationError,
    dump_cluster_configuration,
    is_defined,
    load_cluster_configuration,
    updated_cluster_configuration,
)


def _uploaded() -> dict[str, Any]:
    """What `kubeadm init` (v1.34) stores from CABPK's configuration, defaults filled in."""
    return {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": "v1.34.4",
        "clusterName": "ha",
        "controlPlaneEndpoint": "127.0.0.9:6443",
        "certificatesDir": "/etc/kubernetes/pki",
        "imageRepository": "registry.k8s.io",
        "apiServer": {
            "certSANs": ["localhost"],
            "extraArgs": [{"name": "audit-log-maxage", "value": "7"}],
        },
        "controllerManager": {},
        "scheduler": {},
        "dns": {},
        "proxy": {},
        "networking": {"serviceSubnet": "10.128.0.0/12", "dnsDomain": "cluster.local"},
        "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
        "featureGates": {"ControlPlaneKubeletLocalMode": True},
        "encryptionAlgorithm": "RSA-2048",
        "certificateValidityPeriod": "8760h0m0s",
        "caCertificateValidityPeriod": "87600h0m0s",
    }


def _kcp_spec(**cluster_configuration: Any) -> dict[str, Any]:
    return {"clusterConfiguration": cluster_configuration, "initConfiguration": {"x": 1}}


def test_the_version_changes_and_the_kcps_sections_replace_the_uploaded_ones() -> None:
    spec = _kcp_spec(
        apiServer={
            "certSANs": ["localhost", "127.0.0.1"],
            "extraArgs": [{"name": "audit-log-maxage", "value": "30"}],
        },
        scheduler={"extraArgs": [{"name": "v", "value": "2"}]},
        etcd={"local": {"extraArgs": [{"name": "quota-backend-bytes", "value": "8589934592"}]}},
        certificateValidityPeriodDays=30,
    )
    updated = updated_cluster_configuration(
        _uploaded(), version="v1.35.0", kubeadm_config_spec=spec
    )
    assert updated["kubernetesVersion"] == "v1.35.0"
    assert updated["apiServer"] == spec["clusterConfiguration"]["apiServer"]
    assert updated["scheduler"] == spec["clusterConfiguration"]["scheduler"]
    assert "controllerManager" not in updated  # the KCP sets none
    assert updated["etcd"] == {"local": spec["clusterConfiguration"]["etcd"]["local"]}
    assert updated["certificateValidityPeriod"] == "720h0m0s"
    assert "encryptionAlgorithm" not in updated  # unset in the KCP: kubeadm's default
    # Cluster API switches the kubelet-local-mode gate on for 1.31 up to 1.35.
    assert updated["featureGates"] == {"ControlPlaneKubeletLocalMode": True}
    # What kcp does not manage stays.
    for kept in ("controlPlaneEndpoint", "networking", "clusterName", "proxy", "imageRepository"):
        assert updated[kept] == _uploaded()[kept], kept
    assert updated["caCertificateValidityPeriod"] == "87600h0m0s"


def test_feature_gates_follow_the_kcp_and_the_target_version() -> None:
    spec = _kcp_spec(featureGates={"EtcdLearnerMode": False})
    at_136 = updated_cluster_configuration(_uploaded(), version="v1.36.0", kubeadm_config_spec=spec)
    assert at_136["featureGates"] == {"EtcdLearnerMode": False}
    spec = _kcp_spec(featureGates={"ControlPlaneKubeletLocalMode": False})
    at_135 = updated_cluster_configuration(_uploaded(), version="v1.35.0", kubeadm_config_spec=spec)
    assert at_135["featureGates"] == {"ControlPlaneKubeletLocalMode": False}


def test_image_repository_external_etcd_and_unchanged_documents() -> None:
    spec = _kcp_spec(
        imageRepository="mirror.example/k8s",
        etcd={"external": {"endpoints": ["https://e:2379"], "caFile": "/ca"}},
    )
    updated = updated_cluster_configuration(
        _uploaded(), version="v1.34.4", kubeadm_config_spec=spec
    )
    assert updated["imageRepository"] == "mirror.example/k8s"
    assert updated["etcd"] == {"external": {"endpoints": ["https://e:2379"], "caFile": "/ca"}}
    again = updated_cluster_configuration(updated, version="v1.34.4", kubeadm_config_spec=spec)
    assert again == updated


def test_without_a_cluster_configuration_only_the_version_changes() -> None:
    for spec in (None, {}, {"clusterConfiguration": {"apiServer": {}}}):
        updated = updated_cluster_configuration(
            _uploaded(), version="v1.34.5", kubeadm_config_spec=spec
        )
        assert updated == {**_uploaded(), "kubernetesVersion": "v1.34.5"}
    assert not is_defined({"apiServer": {"certSANs": []}}) and is_defined(
        {"dns": {"imageTag": "x"}}
    )


def test_dns_is_written_only_when_given() -> None:
    spec = _kcp_spec(dns={"imageTag": "v1.12.2"})
    without = updated_cluster_configuration(
        _uploaded(), version="v1.34.4", kubeadm_config_spec=spec
    )
    assert without["dns"] == {}
    with_dns = updated_cluster_configuration(
        {**_uploaded(), "dns": {"disabled": False}},
        version="v1.34.4",
        dns={"imageTag": "v1.12.2", "imageRepository": ""},
    )
    assert with_dns["dns"] == {"disabled": False, "imageTag": "v1.12.2"}


def test_upgrading_to_131_rewrites_a_v1beta3_document_as_v1beta4() -> None:
    current = {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": "v1.30.5",
        "apiServer": {"extraArgs": {"b": "2", "a": "1"}, "timeoutForControlPlane": "4m0s"},
        "etcd": {"local": {"dataDir": "/var/lib/etcd", "extraArgs": {"x": "y"}}},
    }
    updated = updated_cluster_configuration(current, version="v1.31.0")
    assert updated["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert updated["apiServer"] == {
        "extraArgs": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]
    }
    assert updated["etcd"]["local"]["extraArgs"] == [{"name": "x", "value": "y"}]
    # Below 1.31 the KCP's argument lists are written as v1beta3 maps; the timeout stays.
    spec = _kcp_spec(
        apiServer={"extraArgs": [{"name": "a", "value": "1"}, {"name": "a", "value": "3"}]}
    )
    same = updated_cluster_configuration(current, version="v1.30.6", kubeadm_config_spec=spec)
    assert same["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert same["apiServer"] == {"extraArgs": {"a": "3"}, "timeoutForControlPlane": "4m0s"}


def test_round_trip_through_the_config_map() -> None:
    text = dump_cluster_configuration(_uploaded())
    assert load_cluster_configuration({"ClusterConfiguration": text}) == _uploaded()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "no data key ClusterConfiguration"),
        ({"ClusterConfiguration": "a: [b"}, "is not YAML"),
        ({"ClusterConfiguration": "- a"}, "not a YAML mapping"),
        ({"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta2"}, "kcp reads"),
    ],
)
def test_unreadable_documents_say_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(ClusterConfigurationError, match=message):
        load_cluster_configuration(data)
