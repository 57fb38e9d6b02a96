"""Condition types and reasons of Cluster API v1beta2, and helpers over `metav1.Condition` dicts.

Types and reasons are those of Cluster API's KubeadmControlPlane, so that
`kubectl wait --for=condition=Available` and existing alerts keep working.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSequence
from datetime import UTC, datetime
from typing import Any

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"
_STATUSES = frozenset({TRUE, FALSE, UNKNOWN})

# KubeadmControlPlane condition types.
AVAILABLE = "Available"
INITIALIZED = "Initialized"
CERTIFICATES_AVAILABLE = "CertificatesAvailable"
ETCD_CLUSTER_HEALTHY = "EtcdClusterHealthy"
CONTROL_PLANE_COMPONENTS_HEALTHY = "ControlPlaneComponentsHealthy"
MACHINES_READY = "MachinesReady"
MACHINES_UP_TO_DATE = "MachinesUpToDate"
ROLLING_OUT = "RollingOut"
SCALING_UP = "ScalingUp"
SCALING_DOWN = "ScalingDown"
REMEDIATING = "Remediating"
DELETING = "Deleting"
PAUSED = "Paused"

KCP_CONDITION_TYPES: tuple[str, ...] = (
    AVAILABLE,
    INITIALIZED,
    CERTIFICATES_AVAILABLE,
    ETCD_CLUSTER_HEALTHY,
    CONTROL_PLANE_COMPONENTS_HEALTHY,
    MACHINES_READY,
    MACHINES_UP_TO_DATE,
    ROLLING_OUT,
    SCALING_UP,
    SCALING_DOWN,
    REMEDIATING,
    DELETING,
    PAUSED,
)

# Per control-plane Machine condition types, set by kcp on Machines.
API_SERVER_POD_HEALTHY = "APIServerPodHealthy"
CONTROLLER_MANAGER_POD_HEALTHY = "ControllerManagerPodHealthy"
SCHEDULER_POD_HEALTHY = "SchedulerPodHealthy"
ETCD_POD_HEALTHY = "EtcdPodHealthy"
ETCD_MEMBER_HEALTHY = "EtcdMemberHealthy"

MACHINE_CONDITION_TYPES: tuple[str, ...] = (
    API_SERVER_POD_HEALTHY,
    CONTROLLER_MANAGER_POD_HEALTHY,
    SCHEDULER_POD_HEALTHY,
    ETCD_POD_HEALTHY,
    ETCD_MEMBER_HEALTHY,
)

# Condition types of other Cluster API objects that kcp reads.
READY = "Ready"
UP_TO_DATE = "UpToDate"
INFRASTRUCTURE_READY = "InfrastructureReady"
BOOTSTRAP_CONFIG_READY = "BootstrapConfigReady"
NODE_HEALTHY = "NodeHealthy"
HEALTH_CHECK_SUCCEEDED = "HealthCheckSucceeded"
"""On a Machine a MachineHealthCheck targets: False once it found the Machine unhealthy."""
OWNER_REMEDIATED = "OwnerRemediated"
"""On an unhealthy Machine: False until its owner (the control plane) has remediated it."""
OWNER_REMEDIATED_CANNOT_BE_REMEDIATED_REASON = "CannotBeRemediated"
OWNER_REMEDIATED_DEFERRED_REASON = "RemediationDeferred"
OWNER_REMEDIATED_MACHINE_DELETING_REASON = "MachineDeleting"
"""Reasons of `OwnerRemediated` as Cluster API's KCP sets them: it refuses, it waits, it deletes."""
MACHINE_DELETING_WAITING_FOR_PRE_TERMINATE_HOOK_REASON = "WaitingForPreTerminateHook"
"""Reason of a Machine's `Deleting` condition once Cluster API core has drained its Node (and
waited for volumes to detach) and now waits for the pre-terminate hooks to be removed."""

# Reasons shared by many conditions.
AVAILABLE_REASON = "Available"
NOT_AVAILABLE_REASON = "NotAvailable"
READY_REASON = "Ready"
NOT_READY_REASON = "NotReady"
READY_UNKNOWN_REASON = "ReadyUnknown"
UP_TO_DATE_REASON = "UpToDate"
NOT_UP_TO_DATE_REASON = "NotUpToDate"
UP_TO_DATE_UNKNOWN_REASON = "UpToDateUnknown"
ROLLING_OUT_REASON = "RollingOut"
NOT_ROLLING_OUT_REASON = "NotRollingOut"
SCALING_UP_REASON = "ScalingUp"
NOT_SCALING_UP_REASON = "NotScalingUp"
SCALING_DOWN_REASON = "ScalingDown"
NOT_SCALING_DOWN_REASON = "NotScalingDown"
REMEDIATING_REASON = "Remediating"
NOT_REMEDIATING_REASON = "NotRemediating"
NO_REPLICAS_REASON = "NoReplicas"
WAITING_FOR_REPLICAS_SET_REASON = "WaitingForReplicasSet"
INTERNAL_ERROR_REASON = "InternalError"
INSPECTION_FAILED_REASON = "InspectionFailed"
CONNECTION_DOWN_REASON = "ConnectionDown"
PAUSED_REASON = "Paused"
NOT_PAUSED_REASON = "NotPaused"
DELETING_REASON = "Deleting"
NOT_DELETING_REASON = "NotDeleting"
DELETION_COMPLETED_REASON = "DeletionCompleted"

# Reasons specific to KubeadmControlPlane conditions.
INITIALIZED_REASON = "Initialized"
NOT_INITIALIZED_REASON = "NotInitialized"
HEALTHY_REASON = "Healthy"
NOT_HEALTHY_REASON = "NotHealthy"
HEALTH_UNKNOWN_REASON = "HealthUnknown"
WAITING_FOR_WORKERS_DELETION_REASON = "WaitingForWorkersDeletion"
WAITING_FOR_MACHINE_DELETION_REASON = "WaitingForMachineDeletion"

# Reasons of the per-Machine pod conditions.
POD_RUNNING_REASON = "Running"
POD_PROVISIONING_REASON = "Provisioning"
POD_DOES_NOT_EXIST_REASON = "DoesNotExist"
POD_FAILED_REASON = "Failed"
POD_DELETING_REASON = "Deleting"


def rfc3339(moment: datetime) -> str:
    """A timestamp as the API server writes `metav1.Time`: UTC, whole seconds, `Z`."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(obj: Mapping[str, Any], condition_type: str) -> dict[str, Any] | None:
    """The condition of `condition_type` in an object's `status.conditions`, if present."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return None
    return find_condition(status.get("conditions") or [], condition_type)


def find_condition(conditions: Any, condition_type: str) -> dict[str, Any] | None:
    """The condition of `condition_type` in a conditions list, if present."""
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, dict) and condition.get("type") == condition_type:
            return condition
    return None


def is_true(obj: Mapping[str, Any], condition_type: str) -> bool:
    """Whether the object reports `condition_type` with status True."""
    condition = get_condition(obj, condition_type)
    return condition is not None and condition.get("status") == TRUE


def is_false(obj: Mapping[str, Any], condition_type: str) -> bool:
    """Whether the object reports `condition_type` with status False (absent is not False)."""
    condition = get_condition(obj, condition_type)
    return condition is not None and condition.get("status") == FALSE


def set_condition(  # noqa: PLR0917 (the signature callers were promised)
    conditions: MutableSequence[dict[str, Any]],
    condition_type: str,
    status: str | bool,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime,
) -> bool:
    """Add or update a condition in place; returns whether anything changed.

    `lastTransitionTime` moves to `now` only when the status changes, as
    `meta.SetStatusCondition` does, so watchers see when a state began.
    """
    status = (TRUE if status else FALSE) if isinstance(status, bool) else status
    if status not in _STATUSES:
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    if not reason:
        raise ValueError("a condition needs a reason")
    desired: dict[str, Any] = {
        "type": condition_type,
        "status": status,
        "reason": reason,
        "message": message,
    }
    if observed_generation is not None:
        desired["observedGeneration"] = observed_generation
    existing = find_condition(conditions, condition_type)
    if existing is None:
        desired["lastTransitionTime"] = rfc3339(now)
        conditions.append(desired)
        return True
    if existing.get("status") != status or "lastTransitionTime" not in existing:
        desired["lastTransitionTime"] = rfc3339(now)
    else:
        desired["lastTransitionTime"] = existing["lastTransitionTime"]
    if observed_generation is None and "observedGeneration" in existing:
        desired["observedGeneration"] = existing["observedGeneration"]
    if desired == existing:
        return False
    existing.clear()
    existing.update(desired)
    return True


def remove_condition(conditions: MutableSequence[dict[str, Any]], condition_type: str) -> bool:
    """Remove a condition in place; returns whether it was present."""
    for index, condition in enumerate(conditions):
        if condition.get("type") == condition_type:
            del conditions[index]
            return True
    return False
