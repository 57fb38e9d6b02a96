"""`kcp run` as users start it: probes, metrics, a reconcile, a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kcp.api import conditions as c
from kcp.api import groups, labels
from kcp.rest import Kube
from kcp.testing.controlplane import LocalControlPlane
from kcp.testing.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError as error:
        status = getattr(error, "code", 0)
        return int(status or 0), str(error)


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture
def kcp_run(
    control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    health, metrics = free_port(), free_port()
    log = tmp_path / "kcp-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcp",
                "run",
                "--kubeconfig",
                str(control_plane.kubeconfig_path),
                "--namespace",
                namespace,
                "--health-addr",
                f"127.0.0.1:{health}",
                "--metrics-bind-addr",
                f"127.0.0.1:{metrics}",
                "--kubeadmcontrolplane-concurrency",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, health, metrics, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_kcp_run_reconciles_serves_probes_and_metrics_and_stops_on_sigterm(
    kcp_run: tuple[subprocess.Popen[bytes], int, int, Path],
    control_plane: LocalControlPlane,
    namespace: str,
) -> None:
    process, health, metrics, log = kcp_run
    _wait(
        "/readyz to answer 200",
        lambda: process.poll() is None and _get(f"http://127.0.0.1:{health}/readyz")[0] == 200,
        60,
    )
    assert _get(f"http://127.0.0.1:{health}/healthz")[0] == 200
    kube = Kube(control_plane.api_client())
    cluster = kube.create(
        groups.CLUSTER,
        namespace,
        {
            "apiVersion": groups.CLUSTER.api_version,
            "kind": "Cluster",
            "metadata": {"name": "c1"},
            "spec": {
                "controlPlaneRef": {
                    "apiGroup": groups.CONTROLPLANE_GROUP,
                    "kind": "KubeadmControlPlane",
                    "name": "cp",
                }
            },
        },
    )
    kube.create(
        groups.KUBEADM_CONTROL_PLANE,
        namespace,
        {
            "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
            "kind": "KubeadmControlPlane",
            "metadata": {
                "name": "cp",
                # What Cluster API's Cluster controller adds.
                "ownerReferences": [
                    {
                        "apiVersion": groups.CLUSTER.api_version,
                        "kind": "Cluster",
                        "name": "c1",
                        "uid": cluster["metadata"]["uid"],
                    }
                ],
            },
            "spec": {
                "replicas": 1,
                "version": "v1.34.4",
                "machineTemplate": {
                    "spec": {
                        "infrastructureRef": {
                            "apiGroup": groups.INFRASTRUCTURE_GROUP,
                            "kind": "LocalMachineTemplate",
                            "name": "tmpl",
                        }
                    }
                },
            },
        },
    )

    def reconciled() -> Any:
        obj = kube.get(groups.KUBEADM_CONTROL_PLANE, namespace, "cp") or {}
        condition = c.get_condition(obj, c.CERTIFICATES_AVAILABLE) or {}
        waiting = c.get_condition(obj, c.ETCD_CLUSTER_HEALTHY) or {}
        return (
            labels.KUBEADM_CONTROL_PLANE_FINALIZER in (obj["metadata"].get("finalizers") or [])
            and condition.get("status") == c.TRUE
            and "infrastructureProvisioned" in waiting.get("message", "")
        )

    _wait("the KubeadmControlPlane to be reconciled", reconciled, 60)
    for suffix in ("ca", "etcd", "proxy", "sa"):
        assert kube.get(groups.SECRET, namespace, f"c1-{suffix}") is not None, suffix
    status, body = _get(f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200
    assert 'controller_runtime_reconcile_total{controller="kubeadmcontrolplane"' in body
    assert "workqueue_depth" in body
    process.send_signal(signal.SIGTERM)
    assert process.wait(40) == 0, log.read_text()[-3000:]
