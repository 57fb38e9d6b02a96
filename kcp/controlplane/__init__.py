"""The KubeadmControlPlane reconciler (issue 6): certificates, kubeconfig, Machines, etcd
membership, conditions and status of Cluster API control planes, wired into `kcp run`.

`setup(manager, api_client, tracker)` adds the informers and the controller to a
manager; `KubeadmControlPlaneReconciler` is the one-method seam it runs. Names are
loaded on first use, so that `kcp run` (`kcp.controlplane.cli`) can configure the
process before gRPC is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ControlPlaneController",
    "KubeadmControlPlaneReconciler",
    "ReconcilerOptions",
    "setup",
]

_HOMES = {
    "ControlPlaneController": "kcp.controlplane.controller",
    "setup": "kcp.controlplane.controller",
    "KubeadmControlPlaneReconciler": "kcp.controlplane.reconciler",
    "ReconcilerOptions": "kcp.controlplane.reconciler",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kcp.controlplane' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
