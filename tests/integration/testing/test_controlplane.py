"""The local management control plane: real TLS, CRDs, the envtest command, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kcp.testing import binaries
from kcp.testing.controlplane import LocalControlPlane
from tests.interrupts import sigint_reaches_children

KCP_CRD = "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_api_server_serves_tls_and_crds(control_plane: LocalControlPlane, api_client: Any) -> None:
    assert control_plane.server_url.startswith("https://127.0.0.1:")
    version = client.VersionApi(api_client).get_code()
    assert version.git_version == binaries.kubernetes_version()
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(KCP_CRD)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["Established"] == "True"


def test_anonymous_requests_are_refused(control_plane: LocalControlPlane) -> None:
    configuration = client.Configuration()
    configuration.host = control_plane.server_url
    configuration.ssl_ca_cert = str(control_plane.work_dir / "pki" / "ca.crt")
    anonymous = client.ApiClient(configuration)
    with anonymous, pytest.raises(client.ApiException) as refused:
        client.CoreV1Api(anonymous).list_namespace()
    assert refused.value.status in (401, 403)


def test_namespace_fixture_is_fresh(namespace: str, api_client: Any) -> None:
    pods = client.CoreV1Api(api_client).list_namespaced_config_map(namespace)
    names = [item.metadata.name for item in pods.items]
    assert names in ([], ["kube-root-ca.crt"])


def test_stop_leaves_no_process_and_no_files() -> None:
    plane = LocalControlPlane()
    plane.options.crd_dir = None
    plane.options.cluster_api_crds = False
    plane.start()
    pids = plane.pids
    work_dir = plane.work_dir
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    plane.stop()
    assert not any(_alive(pid) for pid in pids)
    assert not work_dir.exists()


def test_envtest_command_prints_kubeconfig_and_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    with sigint_reaches_children():
        command = subprocess.Popen(
            [sys.executable, "-m", "kcp", "envtest", "--work-dir", str(tmp_path / "env")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
    try:
        assert command.stdout is not None
        first_line = command.stdout.readline().strip()
        assert first_line.startswith("KUBECONFIG=")
        kubeconfig = first_line.split("=", 1)[1]
        kubectl = binaries.ensure().kubectl
        result = subprocess.run(
            [str(kubectl), "--kubeconfig", kubeconfig, "get", "crd", KCP_CRD],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        children = _children_of(command.pid)
        assert {"etcd", "kube-apiserver"} <= {name for _, name in children}
        # Keep reading: a child blocked on a full pipe could not finish shutting down.
        threading.Thread(target=command.stdout.read, daemon=True).start()
        # Ctrl-C in a terminal reaches the whole foreground process group.
        os.killpg(command.pid, signal.SIGINT)
        assert command.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid, _ in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [name for pid, name in children if _alive(pid)]
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()


def _children_of(parent: int) -> list[tuple[int, str]]:
    """Processes whose parent is `parent` (the envtest's etcd and kube-apiserver)."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append((int(entry.name), name))
    return found
