"""Small, valid objects of kcp's kinds for tests that create them on a real API server."""

from __future__ import annotations

from typing import Any

from kcp.api import groups

__all__ = ["kubeadm_control_plane"]


def kubeadm_control_plane(name: str, **spec: Any) -> dict[str, Any]:
    """A KubeadmControlPlane the CRD accepts (one replica, a LocalMachineTemplate) + `spec`."""
    return {
        "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
        "kind": "KubeadmControlPlane",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "version": "v1.34.4",
            "machineTemplate": {
                "spec": {
                    "infrastructureRef": {
                        "apiGroup": groups.INFRASTRUCTURE_GROUP,
                        "kind": "LocalMachineTemplate",
                        "name": name,
                    }
                }
            },
            **spec,
        },
    }
