"""Adopting the cluster's control-plane Machines that no controller owns, as Cluster API does.

A control-plane Machine of the cluster (labels `cluster.x-k8s.io/cluster-name`
and `cluster.x-k8s.io/control-plane`) without a controller owner reference —
one made by hand, or left behind by a KubeadmControlPlane deleted with
`--cascade=orphan` — is adopted while the KubeadmControlPlane is not being
deleted: it gets the KubeadmControlPlane as its controller, and the Secrets its
KubeadmConfig owns (the certificates CABPK generated for a Machine that ran
`kubeadm init` on its own; not its bootstrap data) move from the KubeadmConfig
to the KubeadmControlPlane. The KubeadmConfig itself stays its Machine's.

A Machine kcp cannot run is refused, and then none is adopted: one not
bootstrapped by a KubeadmConfig, or running a version more than one minor away
from `spec.version`. So is a control plane whose Machines another controller
owns (Cluster API calls it mixed management). A refusal is a Warning Event
`AdoptionFailed` and a reason on the scaling and rollout conditions; kcp then
creates and deletes no Machine until it is resolved.

A Machine controlled by this KubeadmControlPlane already (what Cluster API's
KCP created, when kcp takes over from it) needs nothing: the ownership is by
UID, and the object stays the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kcp.api import groups, labels
from kcp.api.objects import KubeadmControlPlaneView, MachineView, OwnerRef
from kcp.controlplane.scope import Step
from kcp.controlplane.secrets import controller_reference
from kcp.controlplane.versions import parse_version
from kcp.rest import ApiError
from kcp.runtime.logging import get_logger

__all__ = [
    "ADOPTION_FAILED_REASON",
    "Adoption",
    "AdoptionOutcome",
    "adoption_candidates",
    "adoption_refusal",
    "foreign_controllers",
    "secret_owners_after_adoption",
]

_log = get_logger("kcp.controlplane.reconciler")

ADOPTION_FAILED_REASON = "AdoptionFailed"
"""Event (Cluster API's) and condition reason: a Machine of the cluster cannot be adopted."""


@dataclass(frozen=True)
class AdoptionOutcome:
    """What one look at the cluster's unowned control-plane Machines did."""

    adopted: tuple[str, ...] = ()
    """Machines given this KubeadmControlPlane as controller now."""
    refused: tuple[str, ...] = ()
    """One sentence per Machine kcp will not adopt or run, saying why and what to do."""
    pending: bool = False
    """Unowned Machines were found and not refused: nothing else may be decided until the
    cache shows them owned (the reconcile ends here and comes back)."""


def _controller(machine: MachineView) -> OwnerRef | None:
    return next((ref for ref in machine.owner_references if ref.controller), None)


def _of_cluster(cluster_name: str, machines: Sequence[Mapping[str, Any]]) -> list[MachineView]:
    """The cluster's control-plane Machines, by their labels as Cluster API selects them."""
    found = [MachineView(m) for m in machines]
    return sorted(
        (
            m
            for m in found
            if m.is_control_plane and m.labels.get(labels.CLUSTER_NAME_LABEL) == cluster_name
        ),
        key=lambda m: m.name,
    )


def adoption_candidates(
    cluster_name: str, machines: Sequence[Mapping[str, Any]]
) -> list[MachineView]:
    """The cluster's control-plane Machines without a controller owner reference."""
    return [m for m in _of_cluster(cluster_name, machines) if _controller(m) is None]


def foreign_controllers(
    kcp: KubeadmControlPlaneView, cluster_name: str, machines: Sequence[Mapping[str, Any]]
) -> list[str]:
    """A sentence per control-plane Machine of the cluster that another object controls."""
    problems: list[str] = []
    for machine in _of_cluster(cluster_name, machines):
        ref = _controller(machine)
        if ref is None or ref.uid == kcp.uid:
            continue
        problems.append(
            f"Machine {machine.namespace}/{machine.name} is a control-plane Machine of cluster "
            f"{cluster_name} controlled by {ref.kind} {ref.name}, not by this "
            "KubeadmControlPlane: kcp does not run a control plane whose Machines another "
            "controller owns; delete that Machine or remove its controller owner reference "
            "so that it can be adopted"
        )
    return problems


def adoption_refusal(kcp: KubeadmControlPlaneView, machine: MachineView) -> str | None:
    """Why `machine` cannot be adopted by `kcp`, or None when it can."""
    where = f"{machine.namespace}/{machine.name}"
    ref = machine.bootstrap_config_ref
    if ref is None or ref.kind != groups.KUBEADM_CONFIG.kind:
        found = f"a {ref.kind}" if ref is not None else "none"
        return (
            f"Machine {where} cannot be adopted: its spec.bootstrap.configRef must name a "
            f"KubeadmConfig (found {found}); a KubeadmControlPlane only runs Machines "
            "bootstrapped by kubeadm"
        )
    if not machine.version:
        return None  # no version said: as Cluster API, assume the user knows
    theirs, ours = parse_version(machine.version), parse_version(kcp.version)
    if theirs is None:
        return (
            f"Machine {where} cannot be adopted: its spec.version {machine.version!r} is not "
            "a Kubernetes version"
        )
    if ours is None:
        return None  # reported as InvalidSpec
    if theirs.major != ours.major or abs(theirs.minor - ours.minor) > 1:
        return (
            f"Machine {where} cannot be adopted: it runs {machine.version}, more than one "
            f"minor version away from spec.version {kcp.version}; set spec.version within one "
            "minor version of it, or remove the Machine"
        )
    return None


def secret_owners_after_adoption(
    secret: Mapping[str, Any],
    config: Mapping[str, Any],
    kcp: Mapping[str, Any],
) -> list[dict[str, Any]] | None:
    """The owner references of `secret` once `kcp` has adopted the Machine of the
    KubeadmConfig `config`; None when the Secret stays as it is.

    A Secret the KubeadmConfig owns (a certificate CABPK generated) moves to the
    KubeadmControlPlane as its controller; the reference to the config, found by
    UID, is the one replaced. The Machine's bootstrap data stays the config's.
    """
    config_meta = config.get("metadata") or {}
    metadata = secret.get("metadata") or {}
    refs = [dict(r) for r in metadata.get("ownerReferences") or []]
    owned_by_config = any(
        r.get("kind") == groups.KUBEADM_CONFIG.kind
        and str(r.get("apiVersion") or "").rpartition("/")[0] == groups.BOOTSTRAP_GROUP
        and r.get("name") == config_meta.get("name")
        for r in refs
    )
    data_secret = (config.get("status") or {}).get("dataSecretName")
    if not owned_by_config or metadata.get("name") == data_secret:
        return None
    ours = controller_reference(kcp)
    if ours in refs:
        return None
    replaced = [ours if r.get("uid") == config_meta.get("uid") else r for r in refs]
    if ours not in replaced:
        replaced.append(ours)
    return replaced


class Adoption(Step):
    """Adopts the unowned control-plane Machines of a KubeadmControlPlane's cluster."""

    def adopt(self, kcp: Mapping[str, Any], cluster_name: str) -> AdoptionOutcome:
        """Adopt what can be adopted; say why not otherwise. API failures raise (retried)."""
        view = KubeadmControlPlaneView(kcp)
        machines = self.cache.cluster_machines(view.namespace, cluster_name)
        refused = foreign_controllers(view, cluster_name, machines)
        candidates = adoption_candidates(cluster_name, machines)
        if not candidates:
            return AdoptionOutcome(refused=tuple(refused))
        if not self._still_wanted(view):
            return AdoptionOutcome(pending=True)  # the next reconcile sees the deletion
        refused.extend(r for r in (adoption_refusal(view, m) for m in candidates) if r)
        if refused:
            return AdoptionOutcome(refused=tuple(refused))
        adopted: list[str] = []
        for machine in candidates:
            ref = machine.bootstrap_config_ref
            config = self._kubeadm_config(machine.namespace, ref.name) if ref else None
            if config is None:
                _log.info("KubeadmConfig of a Machine to adopt not found yet", machine=machine.name)
                continue
            self._adopt_config_secrets(kcp, cluster_name, config)
            if self._adopt_machine(kcp, machine):
                adopted.append(machine.name)
        if adopted:
            self.recorder.normal(
                kcp,
                "MachinesAdopted",
                f"Adopted control-plane Machines {', '.join(adopted)} of cluster {cluster_name}",
            )
        return AdoptionOutcome(adopted=tuple(adopted), pending=True)

    def _still_wanted(self, view: KubeadmControlPlaneView) -> bool:
        """A live read: Machines the garbage collector just orphaned from a KubeadmControlPlane
        being deleted must not be adopted back by it (the cache may not show the deletion)."""
        live = self.kube.get(groups.KUBEADM_CONTROL_PLANE, view.namespace, view.name)
        if live is None:
            return False
        current = KubeadmControlPlaneView(live)
        return current.uid == view.uid and not current.is_deleting

    def _kubeadm_config(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        cached = self.cache.kubeadm_config(namespace, name)
        return (
            cached if cached is not None else self.kube.get(groups.KUBEADM_CONFIG, namespace, name)
        )

    def _adopt_config_secrets(
        self, kcp: Mapping[str, Any], cluster_name: str, config: Mapping[str, Any]
    ) -> None:
        namespace = str((config.get("metadata") or {}).get("namespace") or "")
        for secret in self.kube.list(
            groups.SECRET, namespace, label_selector=f"{labels.CLUSTER_NAME_LABEL}={cluster_name}"
        ):
            owners = secret_owners_after_adoption(secret, config, kcp)
            if owners is None:
                continue
            metadata = secret.get("metadata") or {}
            self.kube.merge_patch(
                groups.SECRET,
                namespace,
                str(metadata.get("name")),
                {
                    "metadata": {
                        "ownerReferences": owners,
                        "resourceVersion": metadata.get("resourceVersion"),
                    }
                },
            )
            _log.info(
                "Secret moved from its KubeadmConfig to the KubeadmControlPlane",
                secret=metadata.get("name"),
                kubeadm_config=(config.get("metadata") or {}).get("name"),
            )

    def _adopt_machine(self, kcp: Mapping[str, Any], machine: MachineView) -> bool:
        refs = [dict(r) for r in machine.metadata.get("ownerReferences") or []]
        refs.append(controller_reference(kcp))
        try:
            self.kube.merge_patch(
                groups.MACHINE,
                machine.namespace,
                machine.name,
                {
                    "metadata": {
                        "ownerReferences": refs,
                        # The cache may be behind: never drop a reference written meanwhile.
                        "resourceVersion": machine.resource_version,
                    }
                },
            )
        except ApiError as error:
            if error.status == 409 or error.not_found:
                return False  # changed or gone meanwhile: the next reconcile looks again
            raise
        _log.info("Adopted Machine", machine=machine.name)
        return True
