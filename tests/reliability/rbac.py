"""A kubeconfig for a ServiceAccount that may do exactly what `config/rbac/` grants.

The ClusterRole's rules are read from `config/rbac/role.yaml` (renamed per run,
so that runs on one API server never share it) and bound to a fresh
ServiceAccount; its token comes from the TokenRequest API. `kcp run` started
with this kubeconfig proves that the checked-in role is enough.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kcp.testing.controlplane import LocalControlPlane
from tests.reliability.harness import REPO
from tests.service_account import SERVICE_ACCOUNT, token_kubeconfig

ROLE = REPO / "config" / "rbac" / "role.yaml"


def cluster_role_rules() -> list[dict[str, Any]]:
    (role,) = [d for d in yaml.safe_load_all(ROLE.read_text()) if d and d["kind"] == "ClusterRole"]
    return list(role["rules"])


def service_account_kubeconfig(
    plane: LocalControlPlane, namespace: str, suffix: str, path: Path
) -> tuple[Path, Callable[[], None]]:
    """Create the ServiceAccount in `namespace`, bind the role, write its kubeconfig to `path`.

    Returns the path and a function that deletes the cluster-scoped objects again.
    """
    api = plane.api_client()
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    role_name = f"kcp-reliability-{suffix}"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    rbac.create_cluster_role({"metadata": {"name": role_name}, "rules": cluster_role_rules()})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role_name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        }
    )
    token_kubeconfig(plane, namespace, path)

    def cleanup() -> None:
        with contextlib.suppress(client.ApiException):
            rbac.delete_cluster_role_binding(role_name)
        with contextlib.suppress(client.ApiException):
            rbac.delete_cluster_role(role_name)

    return path, cleanup
