"""Creating a control-plane Machine: its infrastructure machine, its KubeadmConfig, itself.

The infrastructure machine is cloned from the template named by
`spec.machineTemplate.spec.infrastructureRef`, whatever its kind (handled as an
unstructured dict, its kind being the template's without the `Template`
suffix). All three objects share one name, `<kcp>-<5 random characters>`, and
carry the control-plane labels; the Machine also carries Cluster API's KCP
pre-terminate hook. As in Cluster API, the KubeadmControlPlane controls the
Machine, but only owns the KubeadmConfig and the infrastructure machine:
Cluster API's Machine controller then replaces that reference with the
Machine as their controller. When a later step fails, the objects already
created are deleted again.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView
from kcp.controlplane.client import ApiError, Kube
from kcp.controlplane.kubeadm_config import desired_kubeadm_config_spec
from kcp.controlplane.secrets import controller_reference, owner_reference

__all__ = [
    "MANDATORY_READINESS_GATES",
    "MachineTemplateError",
    "create_machine",
    "generate_name",
    "kubeadm_config_object",
    "machine_object",
]

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters Kubernetes' `generateName` uses (no vowels: no accidental words)."""
_SUFFIX_LENGTH = 5
_MAX_NAME_PREFIX = 63 - _SUFFIX_LENGTH - 1
TEMPLATE_SUFFIX = "Template"

MANDATORY_READINESS_GATES: tuple[str, ...] = (
    c.API_SERVER_POD_HEALTHY,
    c.CONTROLLER_MANAGER_POD_HEALTHY,
    c.SCHEDULER_POD_HEALTHY,
    c.ETCD_POD_HEALTHY,
    c.ETCD_MEMBER_HEALTHY,
)
"""Conditions kcp sets that a control-plane Machine must report True to be Ready."""


class MachineTemplateError(Exception):
    """The infrastructure template cannot be used; the message says what to fix."""


def generate_name(prefix: str) -> str:
    """`<prefix>-<5 random characters>`, the prefix shortened to keep a valid label value."""
    base = prefix[:_MAX_NAME_PREFIX].rstrip("-.")
    suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(_SUFFIX_LENGTH))
    return f"{base}-{suffix}"


def _machine_labels(kcp: KubeadmControlPlaneView, cluster_name: str) -> dict[str, str]:
    result = labels.control_plane_machine_labels(
        kcp.name, cluster_name, kcp.machine_template_labels
    )
    watch = kcp.labels.get(labels.WATCH_LABEL)
    if watch:
        result.setdefault(labels.WATCH_LABEL, watch)
    return result


def kubeadm_config_object(
    kcp: KubeadmControlPlaneView, cluster_name: str, name: str, *, init: bool
) -> dict[str, Any]:
    return {
        "apiVersion": groups.KUBEADM_CONFIG.api_version,
        "kind": groups.KUBEADM_CONFIG.kind,
        "metadata": {
            "name": name,
            "namespace": kcp.namespace,
            "labels": _machine_labels(kcp, cluster_name),
            "annotations": dict(kcp.machine_template_annotations),
            "ownerReferences": [owner_reference(kcp.raw)],
        },
        "spec": desired_kubeadm_config_spec(
            kcp.kubeadm_config_spec, init=init, version=kcp.version
        ),
    }


def infra_machine_object(
    kcp: KubeadmControlPlaneView,
    cluster_name: str,
    name: str,
    template: Mapping[str, Any],
) -> dict[str, Any]:
    """The infrastructure machine cloned from `template` (any kind)."""
    ref = kcp.infrastructure_ref
    assert ref is not None
    kind = str(template.get("kind") or ref.kind)
    if not kind.endswith(TEMPLATE_SUFFIX) or kind == TEMPLATE_SUFFIX:
        raise MachineTemplateError(
            f"spec.machineTemplate.spec.infrastructureRef names {kind} {ref.name}, which is not "
            f"an infrastructure machine template (its kind must end in {TEMPLATE_SUFFIX})"
        )
    inner = (template.get("spec") or {}).get("template")
    if not isinstance(inner, Mapping):
        raise MachineTemplateError(
            f"{kind} {kcp.namespace}/{ref.name} has no spec.template; an infrastructure machine "
            "template must carry the machine to clone in spec.template"
        )
    template_meta = inner.get("metadata") or {}
    annotations = {str(k): str(v) for k, v in (template_meta.get("annotations") or {}).items()}
    annotations.update(kcp.machine_template_annotations)
    annotations[labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION] = ref.name
    annotations[labels.TEMPLATE_CLONED_FROM_GROUPKIND_ANNOTATION] = ref.group_kind
    machine_labels = {str(k): str(v) for k, v in (template_meta.get("labels") or {}).items()}
    machine_labels.update(_machine_labels(kcp, cluster_name))
    return {
        "apiVersion": template.get("apiVersion"),
        "kind": kind[: -len(TEMPLATE_SUFFIX)],
        "metadata": {
            "name": name,
            "namespace": kcp.namespace,
            "labels": machine_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(kcp.raw)],
        },
        "spec": copy.deepcopy(dict(inner.get("spec") or {})),
    }


def machine_object(
    kcp: KubeadmControlPlaneView,
    cluster_name: str,
    name: str,
    *,
    infra: Mapping[str, Any],
    failure_domain: str | None,
) -> dict[str, Any]:
    template_spec = (kcp.raw.get("spec") or {}).get("machineTemplate", {}).get("spec") or {}
    gates = [dict(g) for g in template_spec.get("readinessGates") or []]
    present = {g.get("conditionType") for g in gates}
    gates.extend({"conditionType": t} for t in MANDATORY_READINESS_GATES if t not in present)
    infra_api_version = str(infra.get("apiVersion") or "")
    annotations = dict(kcp.machine_template_annotations)
    ref = kcp.infrastructure_ref
    if ref is not None:
        annotations[labels.TEMPLATE_CLONED_FROM_NAME_ANNOTATION] = ref.name
        annotations[labels.TEMPLATE_CLONED_FROM_GROUPKIND_ANNOTATION] = ref.group_kind
    # Cluster API's name, so that core waits for it and a takeover works both ways: the
    # etcd member goes from this hook, after core has drained the Machine's Node.
    annotations[labels.KCP_PRE_TERMINATE_HOOK_CLEANUP_ANNOTATION] = ""
    # A replacement for a remediated Machine says so, so that a retry is counted as one.
    remediation = kcp.annotations.get(labels.REMEDIATION_IN_PROGRESS_ANNOTATION)
    if remediation is not None:
        annotations[labels.REMEDIATION_FOR_ANNOTATION] = remediation
    spec: dict[str, Any] = {
        "clusterName": cluster_name,
        "version": kcp.version,
        "bootstrap": {
            "configRef": {
                "apiGroup": groups.BOOTSTRAP_GROUP,
                "kind": groups.KUBEADM_CONFIG.kind,
                "name": name,
            }
        },
        "infrastructureRef": {
            "apiGroup": infra_api_version.rpartition("/")[0],
            "kind": infra.get("kind"),
            "name": name,
        },
        "readinessGates": gates,
    }
    if failure_domain:
        spec["failureDomain"] = failure_domain
    for key in ("deletion", "taints"):
        if template_spec.get(key):
            spec[key] = copy.deepcopy(template_spec[key])
    return {
        "apiVersion": groups.MACHINE.api_version,
        "kind": groups.MACHINE.kind,
        "metadata": {
            "name": name,
            "namespace": kcp.namespace,
            "labels": _machine_labels(kcp, cluster_name),
            "annotations": annotations,
            "ownerReferences": [controller_reference(kcp.raw)],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class CreatedMachine:
    name: str
    infra_kind: str
    failure_domain: str | None


def create_machine(
    kube: Kube,
    kcp: KubeadmControlPlaneView,
    cluster: ClusterView,
    *,
    init: bool,
    failure_domain: str | None,
) -> CreatedMachine:
    """Create the three objects of one new Machine; undo what was created if a step fails.

    Raises `MachineTemplateError` when the template is missing or unusable
    (the user's to fix) and `ApiError` for other API failures.
    """
    ref = kcp.infrastructure_ref
    if ref is None:
        raise MachineTemplateError(
            "spec.machineTemplate.spec.infrastructureRef is missing or incomplete; set its "
            "apiGroup, kind and name"
        )
    try:
        template_kind = kube.resource_for(ref.api_group, ref.kind)
    except LookupError as error:
        raise MachineTemplateError(
            f"spec.machineTemplate.spec.infrastructureRef: {error}; set its apiGroup and kind "
            "to those of an infrastructure machine template the API server serves"
        ) from None
    template = kube.get(template_kind, kcp.namespace, ref.name)
    if template is None:
        raise MachineTemplateError(
            f"{ref.kind} {kcp.namespace}/{ref.name} named by "
            "spec.machineTemplate.spec.infrastructureRef does not exist; create it or fix "
            "the reference"
        )
    name = generate_name(kcp.name)
    infra = infra_machine_object(kcp, cluster.name, name, template)
    try:
        infra_kind = kube.resource_for(ref.api_group, str(infra["kind"]))
    except LookupError as error:
        raise MachineTemplateError(
            f"{ref.kind} {ref.name} clones into {infra['kind']}, which the API server does not "
            f"serve: {error}"
        ) from None
    created: list[tuple[Any, str]] = []
    try:
        kube.create(infra_kind, kcp.namespace, infra)
        created.append((infra_kind, name))
        kube.create(
            groups.KUBEADM_CONFIG,
            kcp.namespace,
            kubeadm_config_object(kcp, cluster.name, name, init=init),
        )
        created.append((groups.KUBEADM_CONFIG, name))
        kube.create(
            groups.MACHINE,
            kcp.namespace,
            machine_object(kcp, cluster.name, name, infra=infra, failure_domain=failure_domain),
        )
    except ApiError:
        for resource, created_name in reversed(created):
            with contextlib.suppress(ApiError):
                kube.delete(resource, kcp.namespace, created_name)
        raise
    return CreatedMachine(name, str(infra["kind"]), failure_domain)
