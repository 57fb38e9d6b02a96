"""What the node agent makes of kubeadm's configuration, and the decisions around it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kcp import certs
from kcp.api.groups import CONFIG_MAP
from kcp.sim.bootdata import KubeadmCommand, TokenDiscovery, ca_cert_hash, parse_user_data
from kcp.sim.discovery import (
    DiscoveryError,
    cluster_configuration_from_config_map,
    cluster_info_from_config_map,
    verify_pinned_ca,
)
from kcp.sim.infrastructure import bootstrap_backoff
from kcp.sim.kubeadm import EtcdStartConflict, etcd_start, node_settings
from kcp.sim.kubeadm_init import (
    CLUSTER_ROLE_BINDING,
    NODE_BOOTSTRAP_TOKEN_GROUP,
    ROLE_BINDING,
    cluster_configuration_to_upload,
    cluster_info_kubeconfig,
    dns_ip,
    init_objects,
    kubelet_configuration,
)

from .cabpk_userdata import TOKEN, Material, init_user_data


@pytest.fixture(scope="module")
def material() -> Material:
    return Material.new()


def _cluster_configuration(material: Material) -> dict[str, Any]:
    boot = parse_user_data(init_user_data(material), where="test", hostname="m1")
    assert boot.cluster_configuration is not None
    return dict(boot.cluster_configuration)


def test_settings_from_cabpks_cluster_configuration(material: Material) -> None:
    settings = node_settings(
        _cluster_configuration(material), host_path=lambda p: f"/sim/m1/root{p}"
    )
    assert settings.service_cidr == "10.128.0.0/12"
    assert settings.cert_sans == ("localhost", "127.0.0.1")
    assert settings.apiserver_args == ("--audit-log-maxage=7",)
    assert settings.etcd_args == ("--quota-backend-bytes=8589934592",)
    assert settings.certificates_dir == "/etc/kubernetes/pki"
    assert settings.ignored == ()


def test_settings_defaults_without_cluster_configuration() -> None:
    settings = node_settings(None, default_service_cidr="10.96.0.0/12")
    assert settings.service_cidr == "10.96.0.0/12" and settings.dns_domain == "cluster.local"
    assert settings.cert_sans == () and settings.apiserver_args == ()


def test_extra_args_v1beta3_map_owned_flags_and_paths() -> None:
    config = {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "networking": {"serviceSubnet": "10.100.0.0/16,fd00::/108"},
        "apiServer": {
            "extraArgs": {
                "audit-policy-file": "/etc/kubernetes/audit-policy.yaml",
                "secure-port": "7443",
                "anonymous-auth": "false",
                "audit-log-path": "/var/../../etc/passwd",
            }
        },
        "etcd": {"local": {"extraArgs": {"data-dir": "/x", "auto-compaction-retention": "8"}}},
    }
    settings = node_settings(config, host_path=lambda p: f"/sim/m1/root{p}")
    assert settings.service_cidr == "10.100.0.0/16"
    assert settings.apiserver_args == (
        "--audit-policy-file=/sim/m1/root/etc/kubernetes/audit-policy.yaml",
    )
    assert settings.etcd_args == ("--auto-compaction-retention=8",)
    assert {i.split(":")[0] for i in settings.ignored} == {
        "kube-apiserver --secure-port",
        "kube-apiserver --anonymous-auth",
        "kube-apiserver --audit-log-path",
        "etcd --data-dir",
    }


def test_etcd_starts_new_on_init_and_joins_on_join() -> None:
    assert etcd_start(KubeadmCommand.INIT, []) == "new"
    assert etcd_start(KubeadmCommand.JOIN, ["m1"]) == "join"


def test_a_second_init_is_refused_and_a_lonely_join_waits() -> None:
    with pytest.raises(EtcdStartConflict, match="etcd already runs on m1, m2") as caught:
        etcd_start(KubeadmCommand.INIT, ["m2", "m1"])
    assert not caught.value.retry
    with pytest.raises(EtcdStartConflict, match="no etcd member") as caught:
        etcd_start(KubeadmCommand.JOIN, [])
    assert caught.value.retry


def test_kubeadm_config_is_defaulted_with_the_machines_version(material: Material) -> None:
    uploaded = cluster_configuration_to_upload(
        _cluster_configuration(material), version="v1.35.0", endpoint="127.0.0.1:6443"
    )
    assert uploaded["kubernetesVersion"] == "v1.35.0"
    assert uploaded["controlPlaneEndpoint"] == "127.0.0.9:6443"
    assert uploaded["etcd"]["local"]["dataDir"] == "/var/lib/etcd"
    assert uploaded["etcd"]["local"]["extraArgs"] == [
        {"name": "quota-backend-bytes", "value": "8589934592"}
    ]
    assert uploaded["networking"]["dnsDomain"] == "cluster.local"
    assert uploaded["certificatesDir"] == "/etc/kubernetes/pki"
    assert uploaded["clusterName"] == "ha"
    assert uploaded["encryptionAlgorithm"] == "RSA-2048"
    bare = cluster_configuration_to_upload(None, version="v1.34.4", endpoint="127.0.0.1:6443")
    assert bare["controlPlaneEndpoint"] == "127.0.0.1:6443"
    assert bare["apiVersion"] == "kubeadm.k8s.io/v1beta4"


def test_kubelet_configuration() -> None:
    config = kubelet_configuration(
        service_cidr="10.128.0.0/12",
        dns_domain="cluster.local",
        certificates_dir="/etc/kubernetes/pki",
        overrides={"maxPods": 50},
    )
    assert config["clusterDNS"] == ["10.128.0.10"] and config["maxPods"] == 50
    assert dns_ip("10.96.0.0/12") == "10.96.0.10"


def test_init_objects_let_bootstrap_tokens_join(material: Material) -> None:
    uploaded = cluster_configuration_to_upload(
        _cluster_configuration(material), version="v1.34.4", endpoint="127.0.0.9:6443"
    )
    objects = init_objects(
        cluster_configuration=uploaded,
        kubelet_config={"kind": "KubeletConfiguration"},
        cluster_info=cluster_info_kubeconfig(material.ca.cert_pem, "https://127.0.0.9:6443"),
        bootstrap_tokens=[{"token": TOKEN}],
    )
    by_name = {(r.kind, ns, o["metadata"]["name"]): o for r, ns, o in objects}
    kubeadm_config = by_name[("ConfigMap", "kube-system", "kubeadm-config")]
    assert cluster_configuration_from_config_map(kubeadm_config) == uploaded
    assert "kubelet" in by_name[("ConfigMap", "kube-system", "kubelet-config")]["data"]
    bindings = {
        name: [s["name"] for s in o["subjects"]]
        for (kind, _, name), o in by_name.items()
        if kind in (ROLE_BINDING.kind, CLUSTER_ROLE_BINDING.kind)
    }
    for needed in (
        "kubeadm:nodes-kubeadm-config",
        "kubeadm:kubelet-config",
        "kubeadm:get-nodes",
        "kubeadm:kubelet-bootstrap",
    ):
        assert NODE_BOOTSTRAP_TOKEN_GROUP in bindings[needed], needed
    assert bindings["kubeadm:bootstrap-signer-clusterinfo"] == ["system:anonymous"]
    role = by_name[("Role", "kube-system", "kubeadm:nodes-kubeadm-config")]
    assert role["rules"][0]["resourceNames"] == ["kubeadm-config"]
    token = by_name[("Secret", "kube-system", "bootstrap-token-abcdef")]
    assert token["type"] == "bootstrap.kubernetes.io/token"
    assert token["stringData"]["usage-bootstrap-authentication"] == "true"
    assert all(r is not CONFIG_MAP or ns in ("kube-system", "kube-public") for r, ns, _ in objects)


def test_cluster_info_round_trip_and_pin(material: Material) -> None:
    text = cluster_info_kubeconfig(material.ca.cert_pem, "https://127.0.0.9:6443")
    document = yaml.safe_load(text)
    assert document["clusters"][0]["name"] == "" and document["users"] is None
    info = cluster_info_from_config_map({"data": {"kubeconfig": text}}, source="test")
    assert info.server == "https://127.0.0.9:6443" and info.ca_pem == material.ca.cert_pem
    pinned = TokenDiscovery("127.0.0.9:6443", TOKEN, (ca_cert_hash(material.ca.certificate),))
    verify_pinned_ca(info.ca_pem, pinned)
    other = certs.new_certificate_authority("other", algorithm="ecdsa-p256")
    with pytest.raises(DiscoveryError, match="matches none of"):
        verify_pinned_ca(other.cert_pem, pinned)
    verify_pinned_ca(other.cert_pem, TokenDiscovery("e:1", TOKEN, (), True))


def test_discovery_refuses_unusable_config_maps() -> None:
    with pytest.raises(DiscoveryError, match="no data key kubeconfig"):
        cluster_info_from_config_map({"data": {}}, source="cluster-info at e:1")
    with pytest.raises(DiscoveryError, match="no usable kubeconfig"):
        cluster_info_from_config_map({"data": {"kubeconfig": "clusters: []"}}, source="x")
    with pytest.raises(DiscoveryError, match="holds no kubeadm ClusterConfiguration"):
        cluster_configuration_from_config_map({"data": {"ClusterConfiguration": "a: b"}})


def test_bootstrap_backoff_grows_to_a_minute() -> None:
    assert [bootstrap_backoff(n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, 60]
