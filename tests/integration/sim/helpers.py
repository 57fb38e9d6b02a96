"""What the simulator's integration tests share: a 3-machine cluster created as kcp would."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcp import certs
from kcp.api import groups
from kcp.etcd import EtcdTLS
from kcp.rest import Kube
from kcp.sim import ClusterMaterial, Simulator, cluster_objects, machine_objects
from kcp.sim.manifests import kubeconfig_secret
from kcp.testing import binaries

RESOURCES = {
    r.kind: r
    for r in (
        groups.SECRET,
        groups.LOCAL_CLUSTER,
        groups.CLUSTER,
        groups.KUBEADM_CONFIG,
        groups.LOCAL_MACHINE,
        groups.MACHINE,
        groups.KUBEADM_CONTROL_PLANE,
    )
}


def create_all(kube: Kube, namespace: str, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kube.create(RESOURCES[obj["kind"]], namespace, obj)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll `check` until truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return state != "Z"
    return True


@dataclass
class SimCluster:
    """One simulated cluster the tests built, with the credentials a user would hold."""

    namespace: str
    name: str
    machines: list[str]
    material: ClusterMaterial
    sim: Simulator
    kube: Kube
    dir: Path

    @property
    def endpoint(self) -> tuple[str, int]:
        cluster = self.kube.get(groups.CLUSTER, self.namespace, self.name)
        assert cluster is not None
        endpoint = cluster["spec"]["controlPlaneEndpoint"]
        return str(endpoint["host"]), int(endpoint["port"])

    def workload_client(self) -> Any:
        """A `kubernetes` client of the endpoint: the cluster's CA, the admin cert it signed."""
        from kubernetes import client

        (self.dir / "ca.crt").write_bytes(self.material.ca.cert_pem)
        (self.dir / "admin.crt").write_bytes(self.material.admin.cert_pem)
        (self.dir / "admin.key").write_bytes(self.material.admin.key_pem)
        host, port = self.endpoint
        configuration = client.Configuration()
        configuration.host = f"https://{host}:{port}"
        configuration.ssl_ca_cert = str(self.dir / "ca.crt")
        configuration.cert_file = str(self.dir / "admin.crt")
        configuration.key_file = str(self.dir / "admin.key")
        return client.ApiClient(configuration)

    def kubeconfig(self) -> Path:
        """The cluster admin's kubeconfig file (the endpoint, the cluster CA, the admin cert)."""
        path = self.dir / "admin.kubeconfig"
        host, port = self.endpoint
        document = certs.build_kubeconfig(
            cluster_name=self.name,
            server=f"https://{host}:{port}",
            ca_pem=self.material.ca.cert_pem,
            client_cert_pem=self.material.admin.cert_pem,
            client_key_pem=self.material.admin.key_pem,
        )
        path.write_bytes(document)
        return path

    def etcd_tls(self) -> EtcdTLS:
        """Our own etcd client certificate from the cluster's etcd CA (as kcp's tracker has)."""
        pair = certs.issue_certificate(
            self.material.etcd_ca, common_name="test-etcd-client", algorithm="ecdsa-p256"
        )
        return EtcdTLS(
            ca_pem=self.material.etcd_ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem
        )

    def etcd_endpoint(self, machine: str) -> str:
        found = self.sim.machine(self.namespace, machine)
        assert found is not None and found.etcd is not None
        return found.etcd.endpoint


def build_cluster(
    sim: Simulator, kube: Kube, namespace: str, name: str, machines: int, tmp: Path
) -> SimCluster:
    """Create the Secrets, Cluster, LocalCluster, KubeadmControlPlane and `machines` Machines."""
    material = ClusterMaterial.new()
    create_all(kube, namespace, cluster_objects(namespace, name, material))
    kube.create(
        groups.KUBEADM_CONTROL_PLANE,
        namespace,
        {
            "apiVersion": groups.KUBEADM_CONTROL_PLANE.api_version,
            "kind": groups.KUBEADM_CONTROL_PLANE.kind,
            "metadata": {"name": f"{name}-control-plane", "namespace": namespace},
            "spec": {
                "replicas": machines,
                "version": "v1.34.4",
                "machineTemplate": {
                    "spec": {
                        "infrastructureRef": {
                            "apiGroup": groups.INFRASTRUCTURE_GROUP,
                            "kind": groups.LOCAL_MACHINE_TEMPLATE.kind,
                            "name": name,
                        }
                    }
                },
            },
        },
    )
    built = SimCluster(
        namespace, name, [f"{name}-cp-{i}" for i in range(machines)], material, sim, kube, tmp
    )
    # The test plays kcp's small part beside the real core and CABPK: the kubeconfig
    # Secret once core copied the endpoint, the first (init) machine, then, once it
    # serves, the control plane marked initialized so that CABPK hands out join data.
    endpoint = wait_for("the Cluster's endpoint", lambda: built.endpoint, timeout=60)
    kube.create(groups.SECRET, namespace, kubeconfig_secret(namespace, name, material, endpoint))
    first, *joiners = built.machines
    create_all(kube, namespace, machine_objects(namespace, name, first, init=True))
    sim.wait_for_machine(namespace, first, timeout=180)
    kube.apply(
        groups.KUBEADM_CONTROL_PLANE,
        namespace,
        f"{name}-control-plane",
        {"status": {"initialization": {"controlPlaneInitialized": True}}},
        subresource="status",
    )
    for machine in joiners:
        create_all(kube, namespace, machine_objects(namespace, name, machine, init=False))
    return built


@contextlib.contextmanager
def kubectl_port_forward(
    cluster: SimCluster, pod: str, port: int, *, websockets: bool, timeout: float = 30
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`kubectl port-forward` to `kube-system/<pod>` `port` through the cluster's endpoint.

    Yields the local port and the process (its stderr has kubectl's errors once
    it is stopped). `websockets=False` makes kubectl speak SPDY to the API
    server; either way the API server speaks SPDY to the kubelet.
    """
    kubectl = binaries.ensure(progress=False).kubectl
    env = {**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": str(websockets).lower()}
    process = subprocess.Popen(
        [
            str(kubectl),
            f"--kubeconfig={cluster.kubeconfig()}",
            "--namespace=kube-system",
            "port-forward",
            "--address=127.0.0.1",
            f"pod/{pod}",
            f":{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        local = _forwarded_port(process, port, timeout)
        yield local, process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _forwarded_port(process: subprocess.Popen[str], port: int, timeout: float) -> int:
    """The local port of kubectl's "Forwarding from 127.0.0.1:<local> -> <port>" line."""
    import selectors

    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                break
            match = re.search(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {port}", line)
            if match:
                return int(match.group(1))
    process.kill()
    _, err = process.communicate(timeout=10)
    raise AssertionError(f"kubectl port-forward did not start within {timeout:.0f}s: {err}")
