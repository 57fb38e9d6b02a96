"""Cluster API v1beta2 names (groups, kinds, labels, conditions) and thin typed views over dicts.

Constants live in their modules (`groups`, `labels`, `conditions`); the names
below are the package's public face. Imports only `kcp.rest` (the `Resource` type).
"""

from kcp.api import conditions, groups, labels
from kcp.api.conditions import get_condition, is_false, is_true, set_condition
from kcp.api.objects import (
    Address,
    ClusterView,
    FailureDomain,
    KubeadmControlPlaneView,
    MachineView,
    ObjectRef,
    ObjectView,
    OwnerRef,
    parse_time,
)
from kcp.rest import Resource

__all__ = [
    "Address",
    "ClusterView",
    "FailureDomain",
    "KubeadmControlPlaneView",
    "MachineView",
    "ObjectRef",
    "ObjectView",
    "OwnerRef",
    "Resource",
    "conditions",
    "get_condition",
    "groups",
    "is_false",
    "is_true",
    "labels",
    "parse_time",
    "set_condition",
]
