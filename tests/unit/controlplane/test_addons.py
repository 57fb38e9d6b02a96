"""The kube-proxy and CoreDNS images a KubeadmControlPlane asks for."""

from __future__ import annotations

import pytest

from kcp.controlplane.addons import AddonError, Image, coredns_update, kube_proxy_image, oci_tag


def test_images_parse_and_print_back() -> None:
    for text in (
        "registry.k8s.io/kube-proxy:v1.34.4",
        "registry.k8s.io/coredns/coredns:v1.12.1",
        "localhost:5000/kube-proxy:v1.34.4",
        "kube-proxy",
        "registry.k8s.io/kube-proxy@sha256:abc",
    ):
        assert str(Image.parse(text)) == text
    image = Image.parse("localhost:5000/k8s/kube-proxy:v1")
    assert (image.repository, image.name, image.tag) == ("localhost:5000/k8s", "kube-proxy", "v1")


def test_kube_proxy_follows_the_version_and_the_image_repository() -> None:
    current = "registry.k8s.io/kube-proxy:v1.34.4"
    assert kube_proxy_image(current, version="v1.34.5") == "registry.k8s.io/kube-proxy:v1.34.5"
    assert (
        kube_proxy_image(current, version="v1.35.0+k3s1", image_repository="mirror.example/k8s/")
        == "mirror.example/k8s/kube-proxy:v1.35.0_k3s1"
    )
    assert oci_tag("v1.35.0+abc") == "v1.35.0_abc"
    with pytest.raises(AddonError, match=r"pinned by digest.*skip-kube-proxy"):
        kube_proxy_image("registry.k8s.io/kube-proxy@sha256:abc", version="v1.34.5")


def test_coredns_keeps_its_image_unless_the_kcp_names_one() -> None:
    current = "registry.k8s.io/coredns/coredns:v1.12.1"
    assert not coredns_update(current, dns={}).needed
    update = coredns_update(current, dns={"imageTag": "v1.12.2"})
    assert update.needed and update.to_image == "registry.k8s.io/coredns/coredns:v1.12.2"
    assert (update.from_tag, update.to_tag) == ("v1.12.1", "v1.12.2")
    mirrored = coredns_update(current, dns={}, image_repository="mirror.example")
    assert mirrored.to_image == "mirror.example/coredns:v1.12.1"
    own = coredns_update(
        current, dns={"imageRepository": "dns.example/"}, image_repository="mirror.example"
    )
    assert own.to_image == "dns.example/coredns:v1.12.1"


def test_coredns_takes_its_upstream_name_from_18() -> None:
    update = coredns_update("registry.k8s.io/coredns:1.7.0", dns={"imageTag": "v1.8.0"})
    assert update.to_image == "registry.k8s.io/coredns/coredns:v1.8.0"
    old = coredns_update("registry.k8s.io/coredns:1.6.7", dns={"imageTag": "1.7.0"})
    assert old.to_image == "registry.k8s.io/coredns:1.7.0"


@pytest.mark.parametrize(
    ("current", "dns", "message"),
    [
        ("registry.k8s.io/coredns/coredns:v1.12.1", {"imageTag": "v1.11.3"}, "never downgraded"),
        ("registry.k8s.io/coredns/coredns", {"imageTag": "v1.12.2"}, "has no tag"),
        ("registry.k8s.io/coredns/coredns:latest", {"imageTag": "v1.12.2"}, "not a version"),
        ("registry.k8s.io/coredns/coredns:v1.12.1", {"imageTag": "next"}, "set one such as"),
    ],
)
def test_coredns_updates_kcp_refuses(current: str, dns: dict[str, str], message: str) -> None:
    with pytest.raises(AddonError, match=message):
        coredns_update(current, dns=dns)
