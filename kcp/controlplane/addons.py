"""The images of the two add-ons kubeadm installs, as Cluster API's KCP (v1.13) updates them.

- kube-proxy follows the control plane: its image tag becomes `spec.version`
  (as an OCI tag: `+` becomes `_`), its repository the KCP's
  `clusterConfiguration.imageRepository` when set.
- CoreDNS follows the KCP's `clusterConfiguration.dns` (`imageTag`,
  `imageRepository`, else the cluster-wide `imageRepository`); without them it
  keeps its image: Cluster API never derives a CoreDNS version from the
  Kubernetes version. It is never downgraded, and `registry.k8s.io/coredns`
  becomes `registry.k8s.io/coredns/coredns` from CoreDNS 1.8.0 on, the image's
  upstream name.

Pure functions; `kcp.controlplane.upgrade` reads and patches the objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kcp.controlplane.versions import parse_version

__all__ = [
    "AddonError",
    "CoreDNSUpdate",
    "Image",
    "coredns_update",
    "kube_proxy_image",
    "oci_tag",
]

_NOT_IN_TAG = re.compile(r"[^-a-zA-Z0-9_.]")
_RENAMED_FROM = (1, 8, 0)
_OLD_COREDNS_NAME = "coredns"
_COREDNS_NAME = "coredns/coredns"
_UPSTREAM_REGISTRIES = ("registry.k8s.io", "k8s.gcr.io")


class AddonError(ValueError):
    """An add-on's object cannot be updated as it is; the message says what to change."""


@dataclass(frozen=True)
class Image:
    """`repository/name[:tag][@digest]`: `name` is the last path element."""

    repository: str
    name: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Image:
        reference, _, digest = text.strip().partition("@")
        path, tag = reference, ""
        slash = reference.rfind("/")
        colon = reference.rfind(":")
        if colon > slash:
            path, tag = reference[:colon], reference[colon + 1 :]
        repository, _, name = path.rpartition("/")
        if not name:
            raise AddonError(f"image {text!r} has no name")
        return cls(repository, name, tag, digest)

    def __str__(self) -> str:
        text = f"{self.repository}/{self.name}" if self.repository else self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def oci_tag(version: str) -> str:
    """A version as an image tag (characters a tag cannot hold become `_`)."""
    return _NOT_IN_TAG.sub("_", version)


def kube_proxy_image(current: str, *, version: str, image_repository: str = "") -> str:
    """The kube-proxy image for `version`: the tag replaced, and the repository when given."""
    image = Image.parse(current)
    if image.digest:
        raise AddonError(
            f"the kube-proxy image {current} is pinned by digest, so kcp cannot set its tag to "
            f"{version}; remove the digest, or annotate the KubeadmControlPlane with "
            "controlplane.cluster.x-k8s.io/skip-kube-proxy to manage kube-proxy yourself"
        )
    repository = image_repository.rstrip("/") or image.repository
    return str(Image(repository, image.name, oci_tag(version)))


@dataclass(frozen=True)
class CoreDNSUpdate:
    """The CoreDNS image now and the one the KCP asks for."""

    from_image: str
    to_image: str
    from_tag: str
    to_tag: str

    @property
    def needed(self) -> bool:
        return self.from_image != self.to_image


def _tag_version(tag: str) -> tuple[int, int, int] | None:
    parsed = parse_version(tag.replace("_", "+"))
    return parsed.core if parsed is not None else None


def coredns_update(
    current: str, *, dns: Mapping[str, Any], image_repository: str = ""
) -> CoreDNSUpdate:
    """The CoreDNS image the KCP's `dns` settings ask for, from the Deployment's `current` one.

    Raises `AddonError` for an image without a tag or version, and for a downgrade.
    """
    image = Image.parse(current)
    if not image.tag:
        raise AddonError(
            f"the CoreDNS image {current} has no tag, so kcp cannot tell its version; give the "
            "coredns Deployment's image a version tag"
        )
    from_version = _tag_version(image.tag)
    if from_version is None:
        raise AddonError(
            f"the CoreDNS image tag {image.tag!r} is not a version, so kcp cannot tell whether "
            "it may update it; give the coredns Deployment's image a version tag"
        )
    repository = image.repository
    if image_repository:
        repository = image_repository.rstrip("/")
    if dns.get("imageRepository"):
        repository = str(dns["imageRepository"]).rstrip("/")
    to_tag = str(dns.get("imageTag") or image.tag)
    to_version = _tag_version(to_tag)
    if to_version is None:
        raise AddonError(
            f"spec.kubeadmConfigSpec.clusterConfiguration.dns.imageTag {to_tag!r} is not a "
            "CoreDNS version; set one such as v1.12.1"
        )
    name = image.name
    if (
        repository in _UPSTREAM_REGISTRIES
        and name == _OLD_COREDNS_NAME
        and to_version >= _RENAMED_FROM
    ):
        name = _COREDNS_NAME
    to_image = str(Image(repository, name, to_tag))
    update = CoreDNSUpdate(current, to_image, image.tag, to_tag)
    if update.needed and to_version < from_version:
        raise AddonError(
            f"spec.kubeadmConfigSpec.clusterConfiguration.dns.imageTag {to_tag} is older than "
            f"the CoreDNS the cluster runs ({image.tag}) and CoreDNS is never downgraded; set "
            f"{image.tag} or later"
        )
    return update
