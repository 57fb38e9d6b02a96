"""config/default and config/debug: what they render, how hard the manager is locked down,
and that a real API server accepts every object (server-side dry run, Pod Security)."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kcp.testing.controlplane import LocalControlPlane

from .manifests import (
    MANAGER,
    NAMESPACE,
    Manifest,
    apply,
    dump,
    find,
    manager_container,
    render,
)

KCP_CRD = "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"
KCP_TEMPLATE_CRD = "kubeadmcontrolplanetemplates.controlplane.cluster.x-k8s.io"
OVERLAYS = ["config/default", "config/debug"]
CLUSTER_SCOPED = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


@pytest.fixture(scope="module")
def default() -> list[Manifest]:
    return render("config/default")


@pytest.fixture(scope="module")
def debug() -> list[Manifest]:
    return render("config/debug")


def _arg(container: Manifest, flag: str) -> str | None:
    for arg in container.get("args", []):
        if arg == flag:
            return ""
        if arg.startswith(flag + "="):
            return str(arg.split("=", 1)[1])
    return None


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _named_port(container: Manifest, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container port {name!r} missing: {ports}"
    return int(ports[name])


def parse_kcp_run(args: list[str]) -> argparse.Namespace:
    """Parse `args` as `kcp run` would (exits with status 2 on an unknown flag)."""
    from kcp import cli

    return cli.build_parser(["run", *args]).parse_args(["run", *args])


def test_default_renders_only_what_kcp_owns(default: list[Manifest]) -> None:
    objects = {(m["kind"], m["metadata"]["name"]) for m in default}
    assert objects == {
        ("Namespace", NAMESPACE),
        ("CustomResourceDefinition", KCP_CRD),
        ("CustomResourceDefinition", KCP_TEMPLATE_CRD),
        ("ServiceAccount", "kcp-controller-manager"),
        ("ClusterRole", "kcp-manager-role"),
        ("ClusterRoleBinding", "kcp-manager-rolebinding"),
        ("Role", "kcp-leader-election-role"),
        ("RoleBinding", "kcp-leader-election-rolebinding"),
        ("Deployment", MANAGER),
        ("Service", "kcp-controller-manager-metrics-service"),
    }
    for manifest in default:
        labels = manifest["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "kcp", manifest["metadata"]["name"]
        if manifest["kind"] not in CLUSTER_SCOPED:
            assert manifest["metadata"]["namespace"] == NAMESPACE
    for name in (KCP_CRD, KCP_TEMPLATE_CRD):
        crd = find(default, "CustomResourceDefinition", name)
        assert crd["metadata"]["labels"]["cluster.x-k8s.io/v1beta2"] == "v1beta2"


def test_bindings_name_the_prefixed_service_account_and_roles(default: list[Manifest]) -> None:
    subject = {"kind": "ServiceAccount", "name": "kcp-controller-manager", "namespace": NAMESPACE}
    for kind, role_kind, role in (
        ("ClusterRoleBinding", "ClusterRole", "kcp-manager-role"),
        ("RoleBinding", "Role", "kcp-leader-election-role"),
    ):
        binding = find(default, kind)
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == role
        find(default, role_kind, role)
    pod = find(default, "Deployment", MANAGER)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kcp-controller-manager"


def test_manager_runs_locked_down(default: list[Manifest]) -> None:
    pod = find(default, "Deployment", MANAGER)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = manager_container(default)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The only writable place is an emptyDir at /tmp (py-spy's profile output).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts) == {"/tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_manager_probes_and_ports_match_its_flags(default: list[Manifest]) -> None:
    container = manager_container(default)
    assert _arg(container, "--leader-elect") == ""
    health = _arg(container, "--health-addr") or ":9440"
    assert _port(health) == _named_port(container, "healthz") == 9440
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "healthz"}
    assert _arg(container, "--metrics-bind-addr") == ":8080"
    assert _named_port(container, "metrics") == 8080
    assert container["image"].startswith("kcp-controller:")


def test_manager_has_requests_and_a_memory_limit(default: list[Manifest]) -> None:
    resources = manager_container(default)["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert resources["limits"] == {"memory": "512Mi"}


def test_metrics_service_selects_the_manager_metrics_port(default: list[Manifest]) -> None:
    service = find(default, "Service", "kcp-controller-manager-metrics-service")
    template = find(default, "Deployment", MANAGER)["spec"]["template"]
    selector = service["spec"]["selector"]
    assert selector.items() <= template["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert _named_port(manager_container(default), port["targetPort"]) == port["port"] == 8080


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manager_flags_are_flags_kcp_run_accepts(overlay: str) -> None:
    container = manager_container(render(overlay))
    args = parse_kcp_run(container["args"])
    assert args.leader_elect is True


def test_debug_overlay_adds_profiling_and_nothing_else(
    default: list[Manifest], debug: list[Manifest]
) -> None:
    container = manager_container(debug)
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["SYS_PTRACE"],
    }
    assert "add" not in manager_container(default)["securityContext"]["capabilities"]
    assert _arg(container, "--profiler-address") == ":6060"
    assert _arg(manager_container(default), "--profiler-address") is None
    assert _named_port(container, "profiler") == 6060
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Still the non-root user: the profiler lets same-user py-spy attach (PR_SET_PTRACER).
    pod = find(debug, "Deployment", MANAGER)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert container["securityContext"]["runAsNonRoot"] is True
    assert "runAsUser" not in container["securityContext"]
    namespace = find(debug, "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "privileged"
    assert (
        find(default, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )

    # Undo exactly what docs/deploy.md says the overlay changes: the rest is config/default.
    undone = copy.deepcopy(debug)
    find(undone, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = (
        "restricted"
    )
    manager = manager_container(undone)
    manager["args"].remove("--profiler-address=:6060")
    manager["ports"] = [p for p in manager["ports"] if p["name"] != "profiler"]
    del manager["securityContext"]["capabilities"]["add"]
    manager["resources"]["limits"]["memory"] = "512Mi"
    assert undone == default


# -- against the real API server --------------------------------------------------------


def _ensure_namespace(kubeconfig: Path, manifests: list[Manifest]) -> None:
    """Create (or update the labels of) the namespace for real: a dry-run one does not exist."""
    completed = apply(kubeconfig, dump([find(manifests, "Namespace")]), dry_run=False)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_apply_with_server_side_dry_run(
    control_plane: LocalControlPlane, overlay: str
) -> None:
    manifests = render(overlay)
    _ensure_namespace(control_plane.kubeconfig_path, manifests)
    completed = apply(control_plane.kubeconfig_path, dump(manifests), dry_run=True)
    assert completed.returncode == 0, completed.stderr
    applied = [line for line in completed.stdout.splitlines() if line.strip()]
    assert len(applied) == len(manifests), completed.stdout
    assert all("(server dry run)" in line for line in applied), completed.stdout


def _manager_pod(manifests: list[Manifest]) -> Manifest:
    template = find(manifests, "Deployment", MANAGER)["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kcp-manager-pod-security", **copy.deepcopy(template["metadata"])},
        "spec": copy.deepcopy(template["spec"]),
    }


def _admitted(api_client: Any, namespace: str, pod: Manifest) -> str | None:
    """None if the API server would create `pod` in `namespace` (dry run), else why not."""
    try:
        client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod, dry_run="All")
    except client.ApiException as error:
        return str(error.body)
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manager_pod_is_admitted_by_its_namespace_pod_security_level(
    api_client: Any, namespace: str, overlay: str
) -> None:
    manifests = render(overlay)
    labels = find(manifests, "Namespace")["metadata"]["labels"]
    core = client.CoreV1Api(api_client)
    core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    core.create_namespaced_service_account(
        namespace, {"metadata": {"name": "kcp-controller-manager"}}
    )
    pod = _manager_pod(manifests)
    assert _admitted(api_client, namespace, pod) is None

    if overlay == "config/debug":
        # ...and the debug pod needs that relaxation: "restricted" refuses it.
        core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
        refused = _admitted(api_client, namespace, pod)
        assert refused is not None
        assert "SYS_PTRACE" in refused
