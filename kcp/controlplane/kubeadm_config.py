"""A control-plane Machine's KubeadmConfig spec: the one kcp creates, and whether one still matches.

Both follow Cluster API's KubeadmControlPlane (v1.13), so that kcp creates the
same objects and reaches the same verdict on them, whoever created them:

- The first Machine gets the KCP's spec without `joinConfiguration` (it runs
  `kubeadm init`); every other one without `initConfiguration` and with
  `joinConfiguration.controlPlane` set, even if empty: that is what marks a
  KubeadmConfig as a control-plane join for CABPK and for the comparison.
- For Kubernetes 1.31 up to (not including) 1.36 the kubeadm feature gate
  `ControlPlaneKubeletLocalMode` is switched on unless the spec sets it.
- CABPK writes back into a KubeadmConfig's spec what it filled in (the
  control-plane endpoint, the join discovery with its bootstrap token and CA
  hashes), so the comparison ignores those, the DNS settings (updated in
  place), the control-plane component health-check timeout, defaults that
  older versions applied, and empty lists and objects (they render as unset);
  a `kubeadm init` config is first compared as if it were the equivalent join.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "KUBELET_LOCAL_MODE_FEATURE_GATE",
    "desired_kubeadm_config_spec",
    "is_join_config",
    "kubeadm_config_matches",
]

KUBELET_LOCAL_MODE_FEATURE_GATE = "ControlPlaneKubeletLocalMode"
"""kubeadm feature gate Cluster API switches on for 1.31 <= version < 1.36 (GA from 1.36)."""
_GATE_FROM = (1, 31, 0)
_GATE_UNTIL = (1, 36, 0)

_INIT = "initConfiguration"
_JOIN = "joinConfiguration"
_CLUSTER = "clusterConfiguration"
_CONTROL_PLANE = "controlPlane"
_NODE_REGISTRATION = "nodeRegistration"
_TIMEOUTS = "timeouts"
_HEALTH_CHECK_TIMEOUT = "controlPlaneComponentHealthCheckSeconds"
_TAINTS = "taints"

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")

# What `kubeadm join` takes over from `kubeadm init` when an init config is compared as a join.
_INIT_PARTS_KEPT_ON_JOIN = (_TIMEOUTS, "patches", "skipPhases", _NODE_REGISTRATION)


def _parse_version(version: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(version.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _section(spec: dict[str, Any], *path: str) -> dict[str, Any]:
    """The object at `path`, created (empty) where missing or not an object."""
    node = spec
    for key in path:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    return node


def _set_or_drop(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = copy.deepcopy(value)


def _prune(value: Any, key: str = "") -> Any:
    """Drop None, empty objects and empty lists: Go's omitempty renders them as unset.

    An empty `taints` list stays: it means "no taints", unset means kubeadm's default.
    """
    if isinstance(value, Mapping):
        pruned = {k: _prune(v, str(k)) for k, v in value.items()}
        return {
            k: v
            for k, v in pruned.items()
            if v is not None and v != {} and (v != [] or k == _TAINTS)
        }
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _default_feature_gates(spec: dict[str, Any], version: str) -> None:
    parsed = _parse_version(version)
    if parsed is None or not _GATE_FROM <= parsed < _GATE_UNTIL:
        return
    gates = _section(spec, _CLUSTER, "featureGates")
    gates.setdefault(KUBELET_LOCAL_MODE_FEATURE_GATE, True)


def desired_kubeadm_config_spec(
    kcp_spec: Mapping[str, Any], *, init: bool, version: str
) -> dict[str, Any]:
    """The KubeadmConfig spec of a Machine of the KCP: `kubeadm init` for the first, else join.

    `kcp_spec` is the KCP's `spec.kubeadmConfigSpec`, `version` its `spec.version`.
    """
    spec: dict[str, Any] = _prune(copy.deepcopy(dict(kcp_spec)))
    if init:
        spec.pop(_JOIN, None)
    else:
        spec.pop(_INIT, None)
        _section(spec, _JOIN, _CONTROL_PLANE)
    _default_feature_gates(spec, version)
    return spec


def is_join_config(spec: Mapping[str, Any]) -> bool:
    """Whether a KubeadmConfig spec joins a node (as Cluster API tells): `joinConfiguration.
    controlPlane` set, or kubelet extra args on the join (older KCPs left `controlPlane` unset)."""
    join = spec.get(_JOIN)
    if not isinstance(join, Mapping):
        return False
    registration = join.get(_NODE_REGISTRATION)
    extra_args = registration.get("kubeletExtraArgs") if isinstance(registration, Mapping) else None
    return isinstance(join.get(_CONTROL_PLANE), Mapping) or bool(extra_args)


def _apply_old_defaults(spec: dict[str, Any]) -> None:
    """Defaults earlier Cluster API versions wrote; equal to unset for the comparison."""
    if not spec.get("format"):
        spec["format"] = "cloud-config"
    for part in (_INIT, _JOIN):
        registration = _section(spec, part, _NODE_REGISTRATION)
        if not registration.get("imagePullPolicy"):
            registration["imagePullPolicy"] = "IfNotPresent"


def _comparable(
    desired: Mapping[str, Any], current: Mapping[str, Any], *, init_as_join: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both specs with what must not cause a rollout removed or made equal."""
    want: dict[str, Any] = copy.deepcopy(dict(desired))
    have: dict[str, Any] = copy.deepcopy(dict(current))
    if init_as_join and not is_join_config(have):
        init = have.pop(_INIT, None)
        init = init if isinstance(init, dict) else {}
        join = _section(have, _JOIN)
        for key in _INIT_PARTS_KEPT_ON_JOIN:
            _set_or_drop(join, key, init.get(key))
        join[_CONTROL_PLANE] = {"localAPIEndpoint": copy.deepcopy(init.get("localAPIEndpoint"))}
        # Only a join has a CA path: it must never roll out a Machine made by kubeadm init.
        _set_or_drop(join, "caCertPath", (want.get(_JOIN) or {}).get("caCertPath"))
    # CABPK fills in the endpoint (it never changes for a Cluster); DNS is updated in place.
    for key in ("controlPlaneEndpoint", "dns"):
        _set_or_drop(_section(have, _CLUSTER), key, (want.get(_CLUSTER) or {}).get(key))
    for spec in (want, have):
        _apply_old_defaults(spec)
        # Discovery (CABPK's bootstrap token, CA hashes) only matters for the next join.
        _section(spec, _JOIN).pop("discovery", None)
        for part in (_INIT, _JOIN):
            _section(spec, part, _TIMEOUTS).pop(_HEALTH_CHECK_TIMEOUT, None)
    return _prune(want), _prune(have)


def kubeadm_config_matches(
    current_spec: Mapping[str, Any], kcp_spec: Mapping[str, Any], *, version: str
) -> bool:
    """Whether a Machine's KubeadmConfig spec matches the KCP's `kubeadmConfigSpec` (at `version`).

    Every Machine is compared with the join config kcp would create now, a
    `kubeadm init` Machine's config turned into its join equivalent first; an
    init Machine that differs there is compared with the init config too, so
    that a KCP whose init and join parts differ rolls nothing out.
    """
    want, have = _comparable(
        desired_kubeadm_config_spec(kcp_spec, init=False, version=version),
        current_spec,
        init_as_join=True,
    )
    if want == have:
        return True
    if is_join_config(current_spec):
        return False
    want, have = _comparable(
        desired_kubeadm_config_spec(kcp_spec, init=True, version=version),
        current_spec,
        init_as_join=False,
    )
    return want == have
