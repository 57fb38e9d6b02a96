"""A kubeconfig that authenticates as kcp's ServiceAccount with a bound token.

The RBAC tests (tests/integration/deploy) and the reliability fleet
(tests/reliability) both run `kcp run` as that ServiceAccount, to prove the
roles in `config/rbac/` are enough; the token comes from the TokenRequest API.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client

from kcp.testing.controlplane import LocalControlPlane

SERVICE_ACCOUNT = "kcp-controller-manager"
"""The name `config/rbac/` gives kcp's ServiceAccount."""

_TOKEN_SECONDS = 3600


def token_kubeconfig(
    plane: LocalControlPlane, namespace: str, path: Path, name: str = SERVICE_ACCOUNT
) -> Path:
    """Request a token for ServiceAccount `namespace/name` and write a kubeconfig using it.

    The file is only readable by its owner: it holds a credential.
    """
    core = client.CoreV1Api(plane.api_client())
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": _TOKEN_SECONDS}}
    ).status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "management",
                "cluster": {
                    "server": plane.server_url,
                    "certificate-authority": str(plane.work_dir / "pki" / "ca.crt"),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "kcp", "context": {"cluster": "management", "user": name}}],
        "current-context": "kcp",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
