"""config/rbac is sufficient and minimal.

`USED` lists every request kcp makes to the management cluster, next to the
code that makes it. The roles must grant exactly that list. Then `kcp run`
runs as the ServiceAccount, bound only to those roles, against an API server
with RBAC authorization, an audit log and the OwnerReferencesPermissionEnforcement
admission plugin, while the local simulator provides the infrastructure: a
KubeadmControlPlane is reconciled to Available, the audit log shows no 403,
and every request it shows is in `USED`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kcp.testing.controlplane import ControlPlaneOptions, LocalControlPlane
from kcp.testing.processes import free_port
from tests.service_account import SERVICE_ACCOUNT, token_kubeconfig

from .manifests import NAMESPACE, ROOT, Manifest, apply, dump, render

USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
CORE, CAPI = "", "cluster.x-k8s.io"
CONTROLPLANE = "controlplane.cluster.x-k8s.io"
BOOTSTRAP = "bootstrap.cluster.x-k8s.io"
INFRASTRUCTURE = "infrastructure.cluster.x-k8s.io"
COORDINATION = "coordination.k8s.io"

Permission = tuple[str, str, str]
"""(API group, resource[/subresource], verb)."""

# Every request kcp makes to the management cluster, cluster-wide, and where.
USED: dict[Permission, str] = {
    (CORE, "events", "create"): "controlplane/events.py EventRecorder",
    (CORE, "events", "patch"): "controlplane/events.py EventRecorder: a repeat bumps count",
    (CORE, "secrets", "list"): (
        "controlplane/controller.py secrets informer (metadata only); controlplane/adoption.py"
    ),
    (CORE, "secrets", "watch"): "controlplane/controller.py secrets informer (metadata only)",
    (CORE, "secrets", "get"): "controlplane/secrets.py live read; tracker/secrets.py CA reads",
    (CORE, "secrets", "create"): "controlplane/certificates.py, controlplane/kubeconfig.py",
    (CORE, "secrets", "patch"): (
        "controlplane/kubeconfig.py rotation, certificates.py and adoption.py adoption"
    ),
    (BOOTSTRAP, "kubeadmconfigs", "list"): "controlplane/controller.py kubeadmconfigs informer",
    (BOOTSTRAP, "kubeadmconfigs", "watch"): "controlplane/controller.py kubeadmconfigs informer",
    (BOOTSTRAP, "kubeadmconfigs", "create"): "controlplane/machines.py create_machine",
    (BOOTSTRAP, "kubeadmconfigs", "patch"): (
        "controlplane/inspection.py expiry annotation; controlplane/inplace.py apply; "
        "controlplane/managed_fields.py"
    ),
    (BOOTSTRAP, "kubeadmconfigs", "get"): (
        "controlplane/managed_fields.py re-read on conflict; controlplane/adoption.py"
    ),
    (BOOTSTRAP, "kubeadmconfigs", "delete"): (
        "controlplane/machines.py create_machine undo; controlplane/orphans.py"
    ),
    (CAPI, "clusters", "list"): "controlplane/controller.py clusters informer",
    (CAPI, "clusters", "watch"): "controlplane/controller.py clusters informer",
    (CAPI, "machines", "list"): "controlplane/controller.py machines informer",
    (CAPI, "machines", "watch"): "controlplane/controller.py machines informer",
    (CAPI, "machines", "get"): (
        "controlplane/status.py write_conditions re-read on conflict; controlplane/orphans.py"
    ),
    (CAPI, "machines", "create"): "controlplane/machines.py create_machine",
    (CAPI, "machines", "patch"): (
        "controlplane/reconciler.py pre-terminate hook release; controlplane/inplace.py apply; "
        "controlplane/managed_fields.py; controlplane/adoption.py owner reference"
    ),
    (CAPI, "machines", "delete"): "controlplane/reconciler.py scale down, remediation",
    (CAPI, "machines/status", "patch"): "controlplane/reconciler.py machine conditions",
    (CONTROLPLANE, "kubeadmcontrolplanes", "list"): "controlplane/controller.py informer",
    (CONTROLPLANE, "kubeadmcontrolplanes", "watch"): "controlplane/controller.py informer",
    (CONTROLPLANE, "kubeadmcontrolplanes", "get"): (
        "controlplane/status.py re-read on conflict; controlplane/adoption.py live read"
    ),
    (CONTROLPLANE, "kubeadmcontrolplanes", "patch"): (
        "controlplane/lifecycle.py finalizer; controlplane/remediator.py annotation"
    ),
    (CONTROLPLANE, "kubeadmcontrolplanes/status", "patch"): "controlplane/reconciler.py status",
    # Not a request: OwnerReferencesPermissionEnforcement checks it when kcp creates
    # objects whose owner reference to the KubeadmControlPlane blocks owner deletion.
    (CONTROLPLANE, "kubeadmcontrolplanes/finalizers", "update"): "controlplane/secrets.py",
    (INFRASTRUCTURE, "*", "get"): "controlplane/machines.py reads the machine template",
    (INFRASTRUCTURE, "*", "create"): "controlplane/machines.py clones the template",
    (INFRASTRUCTURE, "*", "delete"): (
        "controlplane/machines.py create_machine undo; controlplane/orphans.py"
    ),
    (INFRASTRUCTURE, "*", "list"): "controlplane/orphans.py finds unreferenced ones",
    (INFRASTRUCTURE, "*", "patch"): (
        "controlplane/inplace.py applies labels; controlplane/managed_fields.py"
    ),
}

# In kcp's own namespace only (leader_election_role.yaml).
USED_IN_NAMESPACE: dict[Permission, str] = {
    (COORDINATION, "leases", "get"): "runtime/leaderelection.py _read",
    (COORDINATION, "leases", "create"): "runtime/leaderelection.py _create",
    (COORDINATION, "leases", "update"): "runtime/leaderelection.py _replace",
}

# Permissions the checked-in roles must not grant (spot checks of minimality).
NOT_GRANTED: list[Permission] = [
    (CORE, "secrets", "delete"),
    (CORE, "secrets", "update"),
    (CAPI, "clusters", "patch"),
    (CAPI, "clusters", "update"),
    (CONTROLPLANE, "kubeadmcontrolplanes", "create"),
    (CONTROLPLANE, "kubeadmcontrolplanes", "delete"),
    (CORE, "pods", "list"),
    (CORE, "nodes", "list"),
    (COORDINATION, "leases", "delete"),
]


def grants(rules: list[dict[str, Any]]) -> set[Permission]:
    """The (group, resource, verb) triples `rules` spell out (wildcards kept as "*")."""
    granted: set[Permission] = set()
    for rule in rules:
        assert not rule.get("resourceNames"), "no rule should be narrowed by name"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted


def allows(granted: set[Permission], group: str, resource: str, verb: str) -> bool:
    return any(
        g in ("*", group) and r in ("*", resource) and v in ("*", verb) for g, r, v in granted
    )


@pytest.fixture(scope="module")
def rbac_manifests() -> list[Manifest]:
    kinds = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role"}
    return [m for m in render("config/default") if m["kind"] in kinds | {"RoleBinding"}]


def _rules(manifests: list[Manifest], kind: str) -> list[dict[str, Any]]:
    (role,) = [m for m in manifests if m["kind"] == kind]
    return list(role["rules"])


def test_cluster_role_grants_exactly_what_the_code_uses(rbac_manifests: list[Manifest]) -> None:
    granted = grants(_rules(rbac_manifests, "ClusterRole"))
    assert granted == set(USED), (
        f"granted but unused: {sorted(granted - set(USED))}; "
        f"used but not granted: {sorted(set(USED) - granted)}"
    )
    assert not any("*" in verb for _, _, verb in granted)


def test_leader_election_role_grants_exactly_the_lease_calls(
    rbac_manifests: list[Manifest],
) -> None:
    (role,) = [m for m in rbac_manifests if m["kind"] == "Role"]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role["rules"]) == set(USED_IN_NAMESPACE)


def test_spot_checks_of_what_is_not_granted(rbac_manifests: list[Manifest]) -> None:
    granted = grants(_rules(rbac_manifests, "ClusterRole")) | grants(_rules(rbac_manifests, "Role"))
    for group, resource, verb in NOT_GRANTED:
        assert not allows(granted, group, resource, verb), (group, resource, verb)


# -- a real API server with RBAC, as the ServiceAccount ----------------------------------------

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [USER]}, {"level": "None"}],
}


@pytest.fixture(scope="module")
def rbac_plane(
    tmp_path_factory: pytest.TempPathFactory, rbac_manifests: list[Manifest]
) -> Iterator[LocalControlPlane]:
    """Its own API server (audit log, owner-reference enforcement) with config/rbac applied."""
    directory = tmp_path_factory.mktemp("rbac")
    policy = directory / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    options = ControlPlaneOptions(
        work_dir=directory / "plane",
        extra_apiserver_args=[
            f"--audit-policy-file={policy}",
            f"--audit-log-path={directory / 'audit.log'}",
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        ],
    )
    with LocalControlPlane(options) as plane:
        applied = apply(plane.kubeconfig_path, dump(rbac_manifests), dry_run=False)
        assert applied.returncode == 0, applied.stderr
        yield plane


def audit_log(plane: LocalControlPlane) -> Path:
    return plane.work_dir.parent / "audit.log"


def test_service_account_may_do_exactly_what_is_listed(
    rbac_plane: LocalControlPlane,
) -> None:
    """SubjectAccessReviews as the ServiceAccount: USED allowed, NOT_GRANTED refused."""
    authorization = client.AuthorizationV1Api(rbac_plane.api_client())

    def allowed(group: str, resource: str, verb: str, namespace: str) -> bool:
        plural, _, subresource = resource.partition("/")
        review = authorization.create_subject_access_review(
            {
                "spec": {
                    "user": USER,
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "resourceAttributes": {
                        "group": group,
                        "resource": "localmachines" if plural == "*" else plural,
                        "subresource": subresource,
                        "verb": verb,
                        "namespace": namespace,
                    },
                }
            }
        )
        return bool(review.status.allowed)

    for group, resource, verb in USED:
        assert allowed(group, resource, verb, "some-clusters"), (group, resource, verb)
    for group, resource, verb in USED_IN_NAMESPACE:
        assert allowed(group, resource, verb, NAMESPACE), (group, resource, verb)
        assert not allowed(group, resource, verb, "some-clusters"), (group, resource, verb)
    for group, resource, verb in NOT_GRANTED:
        assert not allowed(group, resource, verb, "some-clusters"), (group, resource, verb)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "kcp run exited before it was ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready within {timeout}s")


def _kcp_status(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        CONTROLPLANE, "v1beta2", namespace, "kubeadmcontrolplanes", name
    )
    return dict(obj.get("status") or {})


def _available(status: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return conditions.get("Available") == "True" and status.get("readyReplicas") == 1


def audited_requests(plane: LocalControlPlane) -> list[dict[str, Any]]:
    events = []
    for line in audit_log(plane).read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == USER and event.get("objectRef"):
            events.append(event)
    return events


def _forbidden(plane: LocalControlPlane) -> list[Permission]:
    """What the ServiceAccount was refused so far (403s in the audit log)."""
    return sorted(
        {
            _permission(e)
            for e in audited_requests(plane)
            if e.get("responseStatus", {}).get("code") == 403
        }
    )


def _permission(event: dict[str, Any]) -> Permission:
    ref = event["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return (ref.get("apiGroup", ""), resource, event["verb"])


def _granted_for(permission: Permission) -> Permission:
    group, _resource, verb = permission
    if group == INFRASTRUCTURE:
        return (group, "*", verb)
    return permission


@pytest.mark.timeout(600)
def test_kcp_run_as_its_service_account_reconciles_with_no_403(
    rbac_plane: LocalControlPlane, tmp_path: Path
) -> None:
    from kcp.sim.options import SimOptions
    from kcp.sim.simulator import Simulator

    admin = rbac_plane.api_client()
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
    kubeconfig = token_kubeconfig(rbac_plane, NAMESPACE, tmp_path / "kcp.kubeconfig")
    health = free_port()
    log = tmp_path / "kcp.log"
    environment = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with log.open("wb") as output:
        kcp = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcp",
                "run",
                f"--kubeconfig={kubeconfig}",
                "--leader-elect",
                f"--leader-election-namespace={NAMESPACE}",
                f"--health-addr=127.0.0.1:{health}",
                "--metrics-bind-addr=0",
                "--v=1",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=tmp_path,
        )
    try:
        _wait_ready(f"http://127.0.0.1:{health}/readyz", kcp, timeout=60)
        with Simulator(
            admin,
            SimOptions(
                namespace=namespace,
                work_dir=tmp_path / "sim",
                kubeconfig=rbac_plane.kubeconfig_path,
            ),
        ):
            sample = (ROOT / "config" / "samples" / "cluster-single.yaml").read_text()
            created = apply(
                rbac_plane.kubeconfig_path, sample, dry_run=False, extra=["-n", namespace]
            )
            assert created.returncode == 0, created.stderr
            name = next(
                d["metadata"]["name"]
                for d in yaml.safe_load_all(sample)
                if d and d["kind"] == "KubeadmControlPlane"
            )
            deadline = time.monotonic() + 300
            status: dict[str, Any] = {}
            while time.monotonic() < deadline and not _available(status):
                assert kcp.poll() is None, log.read_text()[-4000:]
                # A refused request is retried forever: fail at once, naming it.
                assert not _forbidden(rbac_plane), f"kcp was refused: {_forbidden(rbac_plane)}"
                time.sleep(2)
                status = _kcp_status(admin, namespace, name)
            assert _available(status), (
                f"KubeadmControlPlane not Available: {json.dumps(status)[:2000]}\n"
                f"kcp log:\n{log.read_text()[-4000:]}"
            )
    finally:
        kcp.terminate()
        try:
            kcp.wait(timeout=45)
        except subprocess.TimeoutExpired:
            kcp.kill()
            kcp.wait()

    requests = audited_requests(rbac_plane)
    assert requests, "the audit log recorded no request of kcp's ServiceAccount"
    assert not _forbidden(rbac_plane), f"kcp was refused: {_forbidden(rbac_plane)}"
    logged = log.read_text()
    assert "Forbidden" not in logged and " 403" not in logged, logged[-4000:]

    used = {_granted_for(_permission(e)) for e in requests}
    listed = set(USED) | set(USED_IN_NAMESPACE)
    assert used <= listed, f"requests missing from USED (add them and to the role): {used - listed}"
