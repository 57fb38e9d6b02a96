"""Spec checks Cluster API's admission webhook would make, done by the reconciler instead.

kcp runs without a webhook, so a spec Cluster API would refuse at admission
can reach the reconciler. It must not act on one: it reports what to fix in a
condition and an Event, and keeps the Machines it has.
"""

from __future__ import annotations

from kcp.api.objects import KubeadmControlPlaneView
from kcp.controlplane.naming import naming_problem

__all__ = ["MAX_REPLICAS", "validate_spec"]

MAX_REPLICAS = 7
"""etcd's own advice: more than seven voting members only slows consensus down."""


def validate_spec(kcp: KubeadmControlPlaneView, *, max_replicas: int = MAX_REPLICAS) -> list[str]:
    """What is wrong with the spec, one sentence per problem saying what to set instead."""
    problems: list[str] = []
    replicas = kcp.replicas
    if replicas <= 0:
        problems.append(
            f"spec.replicas is {replicas}: a stacked etcd control plane needs at least 1 "
            "replica; set 1, 3 or 5"
        )
    elif replicas > max_replicas:
        # Before the parity check: for a large even count, "set N-1 or N+1" would be wrong too.
        problems.append(
            f"spec.replicas is {replicas}: more than {max_replicas} etcd members slows every "
            f"write down; set at most {max_replicas}"
        )
    elif replicas % 2 == 0:
        problems.append(
            f"spec.replicas is {replicas}: an even number of etcd members tolerates no more "
            f"failures than {replicas - 1} and risks a split vote; set {replicas - 1} or "
            f"{replicas + 1}"
        )
    if not kcp.version:
        problems.append("spec.version is empty; set the Kubernetes version, e.g. v1.34.4")
    try:
        surge = kcp.max_surge
    except ValueError as error:
        problems.append(str(error))
    else:
        if surge not in (0, 1):
            problems.append(
                f"spec.rollout.strategy.rollingUpdate.maxSurge is {surge}; it must be 0 or 1"
            )
        elif surge == 0 and 0 < replicas < 3:
            problems.append(
                "spec.rollout.strategy.rollingUpdate.maxSurge is 0, which needs at least 3 "
                f"replicas (with {replicas} a rollout would remove the only etcd quorum); set "
                "maxSurge to 1"
            )
    if kcp.infrastructure_ref is None:
        problems.append(
            "spec.machineTemplate.spec.infrastructureRef is missing or incomplete; set its "
            "apiGroup, kind and name"
        )
    naming = naming_problem(kcp)
    if naming:
        problems.append(naming)
    return problems
