"""Creating a control-plane Machine: its infrastructure machine, its KubeadmConfig, itself.

The infrastructure machine is cloned from the template named by
`spec.machineTemplate.spec.infrastructureRef`, whatever its kind (handled as an
unstructured dict, its kind being the template's without the `Template`
suffix). All three objects share one name, rendered from
`spec.machineNaming.template` (`kcp.controlplane.naming`; by default
`<kcp>-<5 random characters>`), and carry the control-plane labels; the
Machine also carries Cluster API's KCP pre-terminate hook. As in Cluster API,
the KubeadmControlPlane controls the Machine, but only owns the KubeadmConfig
and the infrastructure machine: Cluster API's Machine controller then replaces
that reference with the Machine as their controller. When a later step fails,
the objects already created are deleted again. Right after each create, kcp
hands the fields it keeps in place over to its later applies
(`kcp.controlplane.managed_fields`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.api.objects import ClusterView, KubeadmControlPlaneView
from kcp.controlplane.kubeadm_config import desired_kubeadm_config_spec
from kcp.controlplane.managed_fields import MACHINE_IN_PLACE_FIELDS, release_fields
from kcp.controlplane.naming import (
    MachineNamingError,
    machine_naming_template,
    render_machine_name,
)
from kcp.controlplane.secrets import controller_reference, owner_reference
from kcp.rest import ApiError, Kube

__all__ = [
    "MANDATORY_READINESS_GATES",
    "MachineNameCollision",
    "MachineTemplateError",
    "create_machine",
    "desired_deletion",
    "desired_readiness_gates",
    "desired_taints",
    "kubeadm_config_object",
    "machine_labels",
    "machine_object",
]

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
    """The machine template (infrastructure reference, naming template) cannot be used; the
    message says what to fix."""


class MachineNameCollision(MachineTemplateError):
    """An object already has the name rendered for a new Machine; the next try renders another."""


def machine_labels(kcp: KubeadmControlPlaneView, cluster_name: str) -> dict[str, str]:
    """Labels of a control-plane Machine, its KubeadmConfig and infrastructure machine: the
    template's, with Cluster API's control-plane labels (and kcp's watch filter) forced."""
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
            "labels": machine_labels(kcp, cluster_name),
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
    infra_labels = {str(k): str(v) for k, v in (template_meta.get("labels") or {}).items()}
    infra_labels.update(machine_labels(kcp, cluster_name))
    return {
        "apiVersion": template.get("apiVersion"),
        "kind": kind[: -len(TEMPLATE_SUFFIX)],
        "metadata": {
            "name": name,
            "namespace": kcp.namespace,
            "labels": infra_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(kcp.raw)],
        },
        "spec": copy.deepcopy(dict(inner.get("spec") or {})),
    }


def _template_spec(kcp: KubeadmControlPlaneView) -> Mapping[str, Any]:
    spec = ((kcp.raw.get("spec") or {}).get("machineTemplate") or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def desired_readiness_gates(kcp: KubeadmControlPlaneView) -> list[dict[str, Any]]:
    """The template's readiness gates, then kcp's mandatory ones it lacks; each type once."""
    gates: list[dict[str, Any]] = []
    present: set[Any] = set()
    for gate in _template_spec(kcp).get("readinessGates") or []:
        if isinstance(gate, Mapping) and gate.get("conditionType") not in present:
            gates.append(copy.deepcopy(dict(gate)))
            present.add(gate.get("conditionType"))
    gates.extend({"conditionType": t} for t in MANDATORY_READINESS_GATES if t not in present)
    return gates


def desired_deletion(kcp: KubeadmControlPlaneView) -> dict[str, Any]:
    """`spec.deletion` of a Machine: the template's node drain, volume detach and node
    deletion timeouts (only those set)."""
    deletion = _template_spec(kcp).get("deletion")
    if not isinstance(deletion, Mapping):
        return {}
    return {k: copy.deepcopy(v) for k, v in deletion.items() if v is not None}


def desired_taints(kcp: KubeadmControlPlaneView) -> list[dict[str, Any]]:
    taints = _template_spec(kcp).get("taints")
    return [copy.deepcopy(dict(t)) for t in taints or [] if isinstance(t, Mapping)]


def machine_object(
    kcp: KubeadmControlPlaneView,
    cluster_name: str,
    name: str,
    *,
    infra: Mapping[str, Any],
    failure_domain: str | None,
) -> dict[str, Any]:
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
        "readinessGates": desired_readiness_gates(kcp),
    }
    if failure_domain:
        spec["failureDomain"] = failure_domain
    deletion, taints = desired_deletion(kcp), desired_taints(kcp)
    if deletion:
        spec["deletion"] = deletion
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": groups.MACHINE.api_version,
        "kind": groups.MACHINE.kind,
        "metadata": {
            "name": name,
            "namespace": kcp.namespace,
            "labels": machine_labels(kcp, cluster_name),
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
    try:
        name = render_machine_name(
            machine_naming_template(kcp), cluster_name=cluster.name, kcp_name=kcp.name
        )
    except MachineNamingError as error:
        raise MachineTemplateError(str(error)) from None
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
        written = kube.create(infra_kind, kcp.namespace, infra)
        created.append((infra_kind, name))
        release_fields(kube, infra_kind, written)
        written = kube.create(
            groups.KUBEADM_CONFIG,
            kcp.namespace,
            kubeadm_config_object(kcp, cluster.name, name, init=init),
        )
        created.append((groups.KUBEADM_CONFIG, name))
        release_fields(kube, groups.KUBEADM_CONFIG, written)
        written = kube.create(
            groups.MACHINE,
            kcp.namespace,
            machine_object(kcp, cluster.name, name, infra=infra, failure_domain=failure_domain),
        )
    except ApiError as error:
        for resource, created_name in reversed(created):
            with contextlib.suppress(ApiError):
                kube.delete(resource, kcp.namespace, created_name)
        if error.status == 409 and error.reason == "AlreadyExists":
            raise MachineNameCollision(
                f"the name {name} rendered from spec.machineNaming.template for a new Machine "
                f"is taken ({error.message or 'already exists'}); kcp retries with another "
                "random part, but if this repeats make the template's fixed text unique to "
                "this control plane, e.g. with {{ .kubeadmControlPlane.name }}"
            ) from None
        raise
    release_fields(kube, groups.MACHINE, written, MACHINE_IN_PLACE_FIELDS)
    return CreatedMachine(name, str(infra["kind"]), failure_domain)
