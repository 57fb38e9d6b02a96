"""The ClusterConfiguration in `kube-system/kubeadm-config`, as Cluster API's KCP updates it.

A joining control-plane node (`kubeadm join`) and `kubeadm upgrade` read the
cluster's configuration from that ConfigMap, so before a rollout creates a
Machine, Cluster API's KCP (v1.13) brings it to the KCP's spec:

- `kubernetesVersion` becomes `spec.version`;
- when the KCP has a `clusterConfiguration`: `apiServer`, `controllerManager`,
  `scheduler`, `etcd.local` (or `etcd.external`), `featureGates` (with the
  kubelet-local-mode gate Cluster API adds for 1.31 to 1.35),
  `certificateValidityPeriod` and `encryptionAlgorithm` are replaced by the
  KCP's (removed where the KCP leaves them unset), `imageRepository` when the
  KCP sets one;
- `dns.imageRepository` and `dns.imageTag` only when CoreDNS itself is updated;
- the document is written in the kubeadm API version of the target Kubernetes
  version (`v1beta3` below 1.31, `v1beta4` from 1.31).

Unlike Cluster API's round trip through its own types, fields kcp does not
manage (`networking`, `proxy`, `dns.disabled`, ...) are kept as they are. Pure
functions on parsed documents; `kcp.controlplane.upgrade` reads and writes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from kcp.controlplane.kubeadm_config import desired_kubeadm_config_spec
from kcp.controlplane.versions import Version, canonical_version, parse_version

__all__ = [
    "CLUSTER_CONFIGURATION_KEY",
    "ClusterConfigurationError",
    "dump_cluster_configuration",
    "is_defined",
    "kubeadm_api_version",
    "load_cluster_configuration",
    "updated_cluster_configuration",
]

CLUSTER_CONFIGURATION_KEY = "ClusterConfiguration"
"""The data key of `kubeadm-config` holding the document."""
V1BETA3 = "kubeadm.k8s.io/v1beta3"
V1BETA4 = "kubeadm.k8s.io/v1beta4"
_V1BETA4_FROM = (1, 31, 0)
_COMPONENTS = ("apiServer", "controllerManager", "scheduler")
_V1BETA4_ONLY = ("certificateValidityPeriod", "caCertificateValidityPeriod", "encryptionAlgorithm")


class ClusterConfigurationError(ValueError):
    """The ConfigMap's document cannot be read as a kubeadm ClusterConfiguration."""


def kubeadm_api_version(version: Version) -> str:
    """The kubeadm API version Cluster API writes for a Kubernetes version."""
    return V1BETA4 if version.core >= _V1BETA4_FROM else V1BETA3


def is_defined(cluster_configuration: Mapping[str, Any] | None) -> bool:
    """Whether the KCP sets anything in `clusterConfiguration` (Cluster API's `IsDefined`)."""
    return bool(_prune(cluster_configuration or {}))


def load_cluster_configuration(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The document under `ClusterConfiguration` in a `kubeadm-config` ConfigMap's data."""
    text = (data or {}).get(CLUSTER_CONFIGURATION_KEY)
    if not isinstance(text, str):
        raise ClusterConfigurationError(f"it has no data key {CLUSTER_CONFIGURATION_KEY}")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ClusterConfigurationError(
            f"its {CLUSTER_CONFIGURATION_KEY} is not YAML: {error}"
        ) from error
    if not isinstance(document, dict):
        raise ClusterConfigurationError(f"its {CLUSTER_CONFIGURATION_KEY} is not a YAML mapping")
    api_version = document.get("apiVersion")
    if api_version not in (V1BETA3, V1BETA4):
        raise ClusterConfigurationError(
            f"its {CLUSTER_CONFIGURATION_KEY} has apiVersion {api_version!r}; kcp reads "
            f"{V1BETA3} and {V1BETA4}"
        )
    return document


def dump_cluster_configuration(document: Mapping[str, Any]) -> str:
    return str(yaml.safe_dump(dict(document), default_flow_style=False, sort_keys=True))


def updated_cluster_configuration(
    current: Mapping[str, Any],
    *,
    version: str,
    kubeadm_config_spec: Mapping[str, Any] | None = None,
    dns: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`current` brought to the KCP: at `version`, with the KCP's `kubeadm_config_spec`
    (its `spec.kubeadmConfigSpec`; None leaves those sections alone) and, when given, the
    CoreDNS image of `dns` (the KCP's `clusterConfiguration.dns`)."""
    target = parse_version(version)
    if target is None:
        raise ClusterConfigurationError(f"{version!r} is not a Kubernetes version")
    api_version = kubeadm_api_version(target)
    document = _convert(copy.deepcopy(dict(current)), api_version)
    document["kubernetesVersion"] = canonical_version(version)
    spec = kubeadm_config_spec or {}
    if kubeadm_config_spec is not None and is_defined(_mapping(spec.get("clusterConfiguration"))):
        desired = _mapping(
            desired_kubeadm_config_spec(spec, init=False, version=version).get(
                "clusterConfiguration"
            )
        )
        _apply(document, desired, api_version)
    if dns is not None:
        section = dict(_mapping(document.get("dns")))
        for key in ("imageRepository", "imageTag"):
            _set_or_drop(section, key, dns.get(key) or None)
        _set_or_drop(document, "dns", section or None)
    return document


def _apply(document: dict[str, Any], desired: Mapping[str, Any], api_version: str) -> None:
    """Cluster API's kubeadm-config mutators, on a document in `api_version`."""
    if desired.get("imageRepository"):
        document["imageRepository"] = desired["imageRepository"]
    _set_or_drop(document, "featureGates", desired.get("featureGates"))
    for component in _COMPONENTS:
        wanted = _component(desired.get(component), api_version)
        if component == "apiServer" and api_version == V1BETA3:
            # v1beta3 keeps the init timeout here; Cluster API carries it over.
            timeout = _mapping(document.get(component)).get("timeoutForControlPlane")
            if timeout is not None:
                wanted = {**(wanted or {}), "timeoutForControlPlane": timeout}
        _set_or_drop(document, component, wanted)
    etcd = _mapping(desired.get("etcd"))
    if _prune(etcd.get("external")):
        document["etcd"] = {"external": copy.deepcopy(dict(_mapping(etcd["external"])))}
    else:
        local = _component(etcd.get("local"), api_version)
        document["etcd"] = {"local": local} if local else {}
    if api_version == V1BETA4:
        days = desired.get("certificateValidityPeriodDays")
        _set_or_drop(
            document,
            "certificateValidityPeriod",
            f"{int(days) * 24}h0m0s" if isinstance(days, int) and days > 0 else None,
        )
        _set_or_drop(document, "encryptionAlgorithm", desired.get("encryptionAlgorithm") or None)


def _component(section: Any, api_version: str) -> dict[str, Any] | None:
    """A KCP component section (kubeadm v1beta4's shape) in `api_version`; None when empty."""
    pruned = _prune(_mapping(section))
    if not pruned:
        return None
    result = dict(copy.deepcopy(pruned))
    if api_version == V1BETA3:
        args = result.get("extraArgs")
        if isinstance(args, list):
            result["extraArgs"] = _args_map(args)
        result.pop("extraEnvs", None)  # v1beta3 has none
    return result


def _convert(document: dict[str, Any], api_version: str) -> dict[str, Any]:
    """The document in `api_version` (kubeadm converts the same way between the two)."""
    if document.get("apiVersion") == api_version:
        return document
    document["apiVersion"] = api_version
    sections: list[dict[str, Any]] = []
    for component in _COMPONENTS:
        section = document.get(component)
        if isinstance(section, dict):
            sections.append(section)
    local = _mapping(document.get("etcd")).get("local")
    if isinstance(local, dict):
        sections.append(local)
    for section in sections:
        args = section.get("extraArgs")
        if api_version == V1BETA4 and isinstance(args, Mapping):
            section["extraArgs"] = [
                {"name": str(name), "value": str(value)} for name, value in sorted(args.items())
            ]
        elif api_version == V1BETA3:
            if isinstance(args, list):
                section["extraArgs"] = _args_map(args)
            section.pop("extraEnvs", None)
    api_server = document.get("apiServer")
    if api_version == V1BETA4 and isinstance(api_server, dict):
        api_server.pop("timeoutForControlPlane", None)  # an InitConfiguration timeout in v1beta4
    if api_version == V1BETA3:
        for key in _V1BETA4_ONLY:
            document.pop(key, None)
    return document


def _args_map(args: list[Any]) -> dict[str, str]:
    """A v1beta4 argument list as v1beta3's map; a repeated name keeps its last value."""
    return {
        str(arg.get("name")): str(arg.get("value") or "")
        for arg in args
        if isinstance(arg, Mapping) and arg.get("name")
    }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _set_or_drop(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value in ({}, []):
        target.pop(key, None)
    else:
        target[key] = copy.deepcopy(value)


def _prune(value: Any) -> Any:
    """Without None, empty objects and empty lists (they render as unset)."""
    if isinstance(value, Mapping):
        pruned = {str(k): _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v not in ({}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value
