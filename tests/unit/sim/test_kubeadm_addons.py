"""What the node agent installs as kubeadm's addon phase: CoreDNS and kube-proxy."""

from __future__ import annotations

from typing import Any

import yaml

from kcp.sim.kubeadm_addons import addon_objects, coredns_image, coredns_version
from kcp.sim.kubeadm_init import cluster_configuration_to_upload


def _uploaded(**config: Any) -> dict[str, Any]:
    return cluster_configuration_to_upload(
        {"networking": {"serviceSubnet": "10.128.0.0/12", "podSubnet": "192.168.0.0/16"}, **config},
        version="v1.34.4",
        endpoint="127.0.0.9:6443",
    )


def _by_name(objects: list[Any]) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    return {(r.kind, ns, o["metadata"]["name"]): o for r, ns, o in objects}


def _image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def test_coredns_and_kube_proxy_as_kubeadm_installs_them() -> None:
    objects = _by_name(addon_objects(_uploaded()))
    coredns = objects[("Deployment", "kube-system", "coredns")]
    assert _image(coredns) == "registry.k8s.io/coredns/coredns:v1.12.1"
    volume = coredns["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"] == {
        "name": "coredns",
        "items": [{"key": "Corefile", "path": "Corefile"}],
    }
    corefile = objects[("ConfigMap", "kube-system", "coredns")]["data"]["Corefile"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile
    assert objects[("Service", "kube-system", "kube-dns")]["spec"]["clusterIP"] == "10.128.0.10"
    proxy = objects[("DaemonSet", "kube-system", "kube-proxy")]
    assert _image(proxy) == "registry.k8s.io/kube-proxy:v1.34.4"
    data = objects[("ConfigMap", "kube-system", "kube-proxy")]["data"]
    assert yaml.safe_load(data["config.conf"])["clusterCIDR"] == "192.168.0.0/16"
    server = yaml.safe_load(data["kubeconfig.conf"])["clusters"][0]["cluster"]["server"]
    assert server == "https://127.0.0.9:6443"
    binding = objects[("ClusterRoleBinding", None, "kubeadm:node-proxier")]
    assert binding["roleRef"]["name"] == "system:node-proxier"
    for kind, name in (("ServiceAccount", "coredns"), ("ServiceAccount", "kube-proxy")):
        assert (kind, "kube-system", name) in objects


def test_images_follow_the_cluster_configuration() -> None:
    config = _uploaded(imageRepository="mirror.example/k8s", dns={"imageTag": "v1.12.2"})
    objects = _by_name(addon_objects(config))
    assert _image(objects[("Deployment", "kube-system", "coredns")]) == (
        "mirror.example/k8s/coredns:v1.12.2"
    )
    assert _image(objects[("DaemonSet", "kube-system", "kube-proxy")]) == (
        "mirror.example/k8s/kube-proxy:v1.34.4"
    )
    assert coredns_image({"kubernetesVersion": "v1.35.0"}) == (
        "registry.k8s.io/coredns/coredns:v1.13.1"
    )
    assert coredns_version("v1.40.0") == "v1.13.1" and coredns_version("v1.20.1") == "v1.11.3"


def test_skipped_or_disabled_add_ons_are_left_out() -> None:
    kinds = {(r.kind, o["metadata"]["name"]) for r, _, o in addon_objects(_uploaded())}
    assert ("Deployment", "coredns") in kinds and ("DaemonSet", "kube-proxy") in kinds
    only_dns = addon_objects(_uploaded(), skip_phases=["addon/kube-proxy"])
    assert not [o for _, _, o in only_dns if o["metadata"]["name"] == "kube-proxy"]
    assert addon_objects(_uploaded(), skip_phases=["addon"]) == []
    disabled = addon_objects(_uploaded(dns={"disabled": True}, proxy={"disabled": True}))
    assert disabled == []
