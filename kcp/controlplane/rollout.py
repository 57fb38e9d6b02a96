"""Which control-plane Machines are out of date, and why (pure decisions on dicts).

A Machine is replaced when its Kubernetes version, its KubeadmConfig or the
infrastructure template it was cloned from differ from the KubeadmControlPlane's
spec, when it was created before `spec.rollout.after` (once that moment has
passed), or when its certificates expire within
`spec.rollout.before.certificatesExpiryDays`. Messages are Cluster API's, so the
Machine's `UpToDate` condition reads the same as there. What counts as a
KubeadmConfig difference is `kcp.controlplane.kubeadm_config`'s to say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kcp.api import labels
from kcp.api.objects import KubeadmControlPlaneView, MachineView
from kcp.controlplane.kubeadm_config import kubeadm_config_matches

__all__ = [
    "UpToDate",
    "infra_cloned_from",
    "machine_up_to_date",
]


@dataclass(frozen=True)
class UpToDate:
    """Whether a Machine matches the spec; `reasons` say what differs, one per line."""

    up_to_date: bool
    reasons: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """The Machine `UpToDate` condition's message: `* reason` lines."""
        return "\n".join(f"* {reason}" for reason in self.reasons)


def machine_up_to_date(
    kcp: KubeadmControlPlaneView,
    machine: MachineView,
    *,
    kubeadm_config_spec: Mapping[str, Any] | None,
    infra_cloned_from: tuple[str, str] | None,
    now: datetime,
    certificates_expiry: datetime | None = None,
) -> UpToDate:
    """Compare one Machine with the spec.

    `kubeadm_config_spec` is the spec of the Machine's KubeadmConfig (None when
    unknown: not compared); `infra_cloned_from` is `(name, Kind.group)` of the
    template its infrastructure machine was cloned from (None: not compared);
    `certificates_expiry` when its certificates expire, if known beyond what
    the Machine itself says.
    """
    reasons: list[str] = []
    if machine.version != kcp.version:
        reasons.append(f"Version {machine.version or '(unset)'}, {kcp.version} required")
    if kubeadm_config_spec is not None and not kubeadm_config_matches(
        kubeadm_config_spec, kcp.kubeadm_config_spec, version=kcp.version
    ):
        reasons.append("KubeadmConfig is not up-to-date")
    template = kcp.infrastructure_ref
    if infra_cloned_from is not None and template is not None:
        name, group_kind = infra_cloned_from
        if name != template.name or group_kind != template.group_kind:
            kind = (
                machine.infrastructure_ref.kind if machine.infrastructure_ref else "Infrastructure"
            )
            reasons.append(f"{kind} is not up-to-date")
    if _certificates_expire_soon(kcp, certificates_expiry or machine.certificates_expiry_date, now):
        reasons.append("Certificates will expire soon")
    if _created_before_rollout_after(kcp, machine, now):
        reasons.append("KubeadmControlPlane spec.rollout.after expired")
    return UpToDate(up_to_date=not reasons, reasons=tuple(reasons))


def _certificates_expire_soon(
    kcp: KubeadmControlPlaneView, expiry: datetime | None, now: datetime
) -> bool:
    days = kcp.certificates_expiry_days
    if days is None or expiry is None:
        return False
    return expiry <= now + timedelta(days=days)


def _created_before_rollout_after(
    kcp: KubeadmControlPlaneView, machine: MachineView, now: datetime
) -> bool:
    after = kcp.rollout_after
    created = machine.creation_timestamp
    if after is None or created is None:
        return False
    return after <= now and created < after


def infra_cloned_from(obj: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """`(name, Kind.group)` from an object's cloned-from annotations, when both are set."""
    if obj is None:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    name = annotations.get(labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION)
    group_kind = annotations.get(labels.TEMPLATE_CLONED_FROM_GROUPKIND_ANNOTATION)
    if isinstance(name, str) and isinstance(group_kind, str) and name and group_kind:
        return name, group_kind
    return None
