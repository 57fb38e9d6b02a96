"""The simulator against a real management API server, with real etcd members and kube-apiservers.

One 3-machine cluster is built once for the module (three workload API servers
on two shared cores take a while); the tests run in file order and the last one
deletes a machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from kcp.api import groups
from kcp.etcd import EtcdClient, EtcdError, EtcdTimeouts, cluster_status
from kcp.rest import Kube
from kcp.sim import Component, Fault, SimOptions, Simulator, annotation_key
from kcp.testing.controlplane import LocalControlPlane
from tests.integration.sim.helpers import (
    SimCluster,
    alive,
    build_cluster,
    kubectl_port_forward,
    wait_for,
)

pytestmark = pytest.mark.integration

MACHINES = 3
QUICK = EtcdTimeouts(dial=1.0, call=2.0)


@pytest.fixture(scope="module")
def cluster(
    control_plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimCluster]:
    namespace = f"sim-{uuid.uuid4().hex[:8]}"
    kube = Kube(control_plane.api_client())
    kube.create(groups.NAMESPACE, None, {"metadata": {"name": namespace}})
    sim = Simulator(
        control_plane.api_client(),
        SimOptions(namespace=namespace, kubeconfig=control_plane.kubeconfig_path),
    )
    sim.start()
    try:
        built = build_cluster(sim, kube, namespace, "c1", MACHINES, tmp_path_factory.mktemp("c1"))
        started = time.monotonic()
        for machine in built.machines:
            sim.wait_for_machine(namespace, machine, timeout=180)
        print(f"3 machines up in {time.monotonic() - started:.1f}s")
        yield built
    finally:
        sim.stop()
        with contextlib.suppress(Exception):
            kube.delete(groups.NAMESPACE, None, namespace)


def _node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_three_machines_form_one_etcd_cluster(cluster: SimCluster) -> None:
    endpoints = [cluster.etcd_endpoint(m) for m in cluster.machines]
    status = cluster_status(endpoints, tls=cluster.etcd_tls(), timeouts=QUICK, transport="grpc")
    assert status.healthy, status.errors
    assert sorted(m.name for m in status.members) == sorted(cluster.machines)
    assert status.leader_id is not None
    # Every member on its own loopback address, at the standard ports.
    hosts = {e.rsplit(":", 1)[0] for e in endpoints}
    assert len(hosts) == MACHINES and "127.0.0.1" not in hosts
    assert all(e.endswith(":2379") for e in endpoints)


def test_api_servers_answer_through_the_endpoint_with_the_cluster_ca(cluster: SimCluster) -> None:
    from kubernetes import client

    host, port = cluster.endpoint
    assert port == 6443 and host.startswith("127.") and host != "127.0.0.1"
    local = cluster.kube.get(groups.LOCAL_CLUSTER, cluster.namespace, cluster.name)
    assert local is not None and local["spec"]["controlPlaneEndpoint"] == {
        "host": host,
        "port": port,
    }
    api = cluster.workload_client()
    try:
        core = client.CoreV1Api(api)
        nodes = core.list_node().items
        assert sorted(n.metadata.name for n in nodes) == sorted(cluster.machines)
        assert all(_node_ready(n) for n in nodes)
        for node in nodes:
            assert node.spec.provider_id == f"local:///{cluster.namespace}/{node.metadata.name}"
            assert "node-role.kubernetes.io/control-plane" in node.metadata.labels
        pods = core.list_namespaced_pod("kube-system", label_selector="tier=control-plane").items
        expected = {
            f"{component}-{machine}"
            for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
            for machine in cluster.machines
        }
        assert {p.metadata.name for p in pods} == expected

        def all_ready() -> bool:
            listed = core.list_namespaced_pod("kube-system", label_selector="tier=control-plane")
            return all(
                p.status.phase == "Running"
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
                for p in listed.items
            )

        wait_for("mirror pods Running and Ready", all_ready, timeout=20)
        assert all(p.metadata.labels["component"] in p.metadata.name for p in pods)
    finally:
        api.close()


def test_kubeadm_init_installed_coredns_and_kube_proxy(cluster: SimCluster) -> None:
    """kubeadm's addon phase, as Cluster API's KCP finds it: objects, no running Pods."""
    from kubernetes import client

    api = cluster.workload_client()
    try:
        apps = client.AppsV1Api(api)
        core = client.CoreV1Api(api)
        coredns = apps.read_namespaced_deployment("coredns", "kube-system")
        assert [c.image for c in coredns.spec.template.spec.containers] == [
            "registry.k8s.io/coredns/coredns:v1.12.1"
        ]
        proxy = apps.read_namespaced_daemon_set("kube-proxy", "kube-system")
        assert [c.image for c in proxy.spec.template.spec.containers] == [
            "registry.k8s.io/kube-proxy:v1.34.4"
        ]
        assert "Corefile" in core.read_namespaced_config_map("coredns", "kube-system").data
        proxy_config = core.read_namespaced_config_map("kube-proxy", "kube-system").data
        assert {"config.conf", "kubeconfig.conf"} <= set(proxy_config)
        assert core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
    finally:
        api.close()


@pytest.mark.parametrize("websockets", [True, False], ids=["kubectl-websocket", "kubectl-spdy"])
def test_port_forward_through_the_endpoint_reaches_a_machines_etcd_and_api_server(
    cluster: SimCluster, websockets: bool
) -> None:
    """As Cluster API reaches a member: `kube-system/etcd-<node>` 2379 (and the machine's
    API server, `kube-apiserver-<node>` 6443) through a port-forward the workload API server
    proxies to the node's kubelet, with mutual TLS inside, both etcd transports."""
    node = cluster.machines[1]
    machine = cluster.sim.machine(cluster.namespace, node)
    assert machine is not None and machine.etcd is not None and machine.files is not None
    tls = dataclasses.replace(cluster.etcd_tls(), server_name=node)
    with kubectl_port_forward(cluster, f"etcd-{node}", 2379, websockets=websockets) as (port, _):
        for transport in ("grpc", "gateway"):
            with EtcdClient.open(
                f"127.0.0.1:{port}", tls, timeouts=QUICK, transport=transport
            ) as etcd:
                # The member that answers is that machine's, not any member of the cluster.
                assert etcd.status().member_id == machine.etcd.member_id
                assert sorted(m.name for m in etcd.members()) == sorted(cluster.machines)
    with kubectl_port_forward(cluster, f"kube-apiserver-{node}", 6443, websockets=websockets) as (
        port,
        _,
    ):
        served = _serving_certificate(port, server_name=node, ca_pem=cluster.material.ca.cert_pem)
    own = x509.load_pem_x509_certificate(machine.files.apiserver_crt.read_bytes())
    assert served == own
    assert served.not_valid_after_utc == machine.files.apiserver_not_after
    # A port the pod does not serve: kubectl reports the kubelet's refusal and gives up.
    with kubectl_port_forward(cluster, f"etcd-{node}", 2380, websockets=websockets) as forward:
        port, process = forward
        assert _read_through(port) == b""
        process.wait(15)
        assert process.stderr is not None
        refusal = process.stderr.read()
    assert f"forwards no port 2380 of pod kube-system/etcd-{node} (it forwards: 2379)" in refusal
    log = (machine.dir / "logs" / "kubelet.log").read_text()
    assert f'"Port-forward" pod="kube-system/etcd-{node}"' in log
    assert f'"Port-forward" pod="kube-system/kube-apiserver-{node}"' in log


def test_port_forward_over_a_websocket_to_the_kubelet(cluster: SimCluster) -> None:
    """The kubernetes client's port-forward is a websocket all the way to the kubelet."""
    from kubernetes import client
    from kubernetes.stream import portforward

    node = cluster.machines[0]
    machine = cluster.sim.machine(cluster.namespace, node)
    assert machine is not None and machine.address is not None
    api = cluster.workload_client()
    try:
        core = client.CoreV1Api(api)
        # Where the API server sends a port-forward to one of the node's pods.
        status = api.sanitize_for_serialization(core.read_node(node))["status"]
        assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
        assert {"type": "InternalIP", "address": machine.address} in status["addresses"]

        def forward(pod: str, port: int) -> Any:
            return portforward(
                core.connect_get_namespaced_pod_portforward, pod, "kube-system", ports=str(port)
            )

        etcd = forward(f"etcd-{node}", 2379)
        try:
            members = _etcd_member_names(etcd.socket(2379), cluster, node)
        finally:
            etcd.close()
        assert sorted(members) == sorted(cluster.machines)
        for pod, port, message in [
            (f"etcd-{node}", 2380, f"forwards no port 2380 of pod kube-system/etcd-{node}"),
            (
                f"kube-scheduler-{node}",
                10259,
                f"runs nothing for pod kube-system/kube-scheduler-{node} to forward to",
            ),
        ]:
            refused = forward(pod, port)
            sock = refused.socket(port)
            sock.settimeout(10)
            assert sock.recv(1) == b""  # closed once the kubelet's error arrived
            error = wait_for("the kubelet's refusal", partial(refused.error, port), timeout=10)
            assert message in error
            refused.close()
    finally:
        api.close()
    log = (machine.dir / "logs" / "kubelet.log").read_text()
    assert f'"Port-forward" pod="kube-system/etcd-{node}" ' in log and "websocket=true" in log


def _read_through(port: int) -> bytes:
    """Connect to 127.0.0.1:`port` and read what comes first (b"" when it is closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        return sock.recv(1)


def _serving_certificate(port: int, *, server_name: str, ca_pem: bytes) -> x509.Certificate:
    """The certificate served at 127.0.0.1:`port`, verified against `ca_pem` for `server_name`."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _etcd_member_names(tunnel: Any, cluster: SimCluster, node: str) -> list[str]:
    """etcd's member list over mutual TLS inside `tunnel` (a socket), by its JSON gateway."""
    tls = cluster.etcd_tls()
    (cluster.dir / "etcd-client.crt").write_bytes(tls.cert_pem)
    (cluster.dir / "etcd-client.key").write_bytes(tls.key_pem)
    context = ssl.create_default_context(cadata=tls.ca_pem.decode())
    context.load_cert_chain(cluster.dir / "etcd-client.crt", cluster.dir / "etcd-client.key")
    # The client's socket pair end; a duplicate is a plain socket that ssl can wrap.
    raw = socket.fromfd(tunnel.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(10)
    with context.wrap_socket(raw, server_hostname=node) as sock:
        connection = http.client.HTTPConnection(node)
        connection.sock = sock
        connection.request(
            "POST",
            "/v3/cluster/member/list",
            body=b"{}",
            headers={"Content-Type": "application/json"},
        )
        body = json.loads(connection.getresponse().read())
    return [str(m["name"]) for m in body["members"]]


def test_cluster_api_objects_reflect_the_machines(cluster: SimCluster) -> None:
    """What Cluster API's own core and CABPK write once the simulated machines serve."""
    kube = cluster.kube
    cl = kube.get(groups.CLUSTER, cluster.namespace, cluster.name)
    assert cl is not None
    assert cl["status"]["initialization"] == {
        "infrastructureProvisioned": True,
        "controlPlaneInitialized": True,
    }

    def machines_running() -> list[dict[str, Any]] | None:
        found = [kube.get(groups.MACHINE, cluster.namespace, m) for m in cluster.machines]
        if all(m and m.get("status", {}).get("phase") == "Running" for m in found):
            return [m for m in found if m]
        return None

    machines = wait_for("Machines Running", machines_running, timeout=20)
    for machine in machines:
        name = machine["metadata"]["name"]
        assert machine["status"]["nodeRef"] == {"name": name}
        assert machine["spec"]["providerID"] == f"local:///{cluster.namespace}/{name}"
        assert machine["spec"]["bootstrap"]["dataSecretName"] == name
        assert {a["type"] for a in machine["status"]["addresses"]} == {"InternalIP", "Hostname"}
        assert machine["status"]["initialization"] == {
            "bootstrapDataSecretCreated": True,
            "infrastructureProvisioned": True,
        }
        ready = next(c for c in machine["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        # Core found the Node by the provider ID the infrastructure machine reported.
        assert machine["status"]["nodeInfo"]["kubeletVersion"]
        local = kube.get(groups.LOCAL_MACHINE, cluster.namespace, name)
        assert local is not None
        owners = [r["kind"] for r in local["metadata"]["ownerReferences"]]
        assert owners == ["Machine"]
        assert local["status"]["etcd"]["memberID"]
        config = kube.get(groups.KUBEADM_CONFIG, cluster.namespace, name)
        assert config is not None and config["status"]["initialization"]["dataSecretCreated"]
    kcp = kube.get(groups.KUBEADM_CONTROL_PLANE, cluster.namespace, f"{cluster.name}-control-plane")
    assert kcp is not None
    assert [r["name"] for r in kcp["metadata"]["ownerReferences"]] == [cluster.name]


def test_the_local_cluster_failure_domains_reach_the_cluster_status(cluster: SimCluster) -> None:
    kube = cluster.kube
    domains = [
        {"name": "fd1", "controlPlane": True, "attributes": {"zone": "a"}},
        {"name": "fd2", "controlPlane": True},
        {"name": "workers", "controlPlane": False},
    ]

    def cluster_failure_domains() -> Any:
        found = kube.get(groups.CLUSTER, cluster.namespace, cluster.name)
        return ((found or {}).get("status") or {}).get("failureDomains")

    assert cluster_failure_domains() is None  # the LocalCluster lists none
    patch = {"spec": {"failureDomains": domains}}
    kube.merge_patch(groups.LOCAL_CLUSTER, cluster.namespace, cluster.name, patch)
    try:
        # As Cluster API core does: LocalCluster spec -> its status -> the Cluster's status.
        copied = wait_for("the Cluster's failure domains", cluster_failure_domains, timeout=20)
        assert copied == domains
        local = kube.get(groups.LOCAL_CLUSTER, cluster.namespace, cluster.name)
        assert local is not None and local["status"]["failureDomains"] == domains
    finally:
        patch = {"spec": {"failureDomains": None}}
        kube.merge_patch(groups.LOCAL_CLUSTER, cluster.namespace, cluster.name, patch)
    wait_for("the failure domains to go", lambda: cluster_failure_domains() is None, timeout=20)


def test_killed_etcd_member_is_unreachable_until_restored(cluster: SimCluster) -> None:
    victim = cluster.machines[1]
    endpoint = cluster.etcd_endpoint(victim)
    tls = cluster.etcd_tls()
    cluster.sim.inject(cluster.namespace, victim, Component.ETCD, Fault.KILLED)
    with (
        pytest.raises(EtcdError),
        EtcdClient.open(endpoint, tls, timeouts=QUICK, transport="grpc") as client,
    ):
        client.status()
    others = [cluster.etcd_endpoint(m) for m in cluster.machines if m != victim]
    status = cluster_status(others, tls=tls, timeouts=QUICK, transport="grpc")
    assert len(status.reachable) == 2 and status.leader_id is not None
    # The kubelet does not restart a faulted process; the pod reports it.
    time.sleep(3)
    machine = cluster.sim.machine(cluster.namespace, victim)
    assert machine is not None and "etcd" not in machine.pids()

    cluster.sim.restore(cluster.namespace, victim, Component.ETCD)

    def reachable() -> bool:
        with EtcdClient.open(endpoint, tls, timeouts=QUICK, transport="grpc") as client:
            return client.status().has_leader

    wait_for("the restored member to rejoin", reachable, timeout=30)


def test_blackholed_api_server_accepts_tcp_and_never_answers(cluster: SimCluster) -> None:
    victim = cluster.machines[2]
    machine = cluster.sim.machine(cluster.namespace, victim)
    assert machine is not None and machine.address is not None
    cluster.sim.inject(cluster.namespace, victim, Component.API_SERVER, Fault.BLACKHOLED)
    try:
        with socket.create_connection((machine.address, 6443), timeout=2) as sock:
            sock.settimeout(1.0)
            sock.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a TLS ClientHello
            with pytest.raises(TimeoutError):
                sock.recv(1)
        lb = cluster.sim.cluster(cluster.namespace, cluster.name)
        assert lb is not None and lb.lb is not None
        wait_for(
            "the load balancer to drop the blackholed backend",
            lambda: victim not in lb.lb.healthy_backends(),  # type: ignore[union-attr]
            timeout=10,
        )
        # The endpoint keeps serving from the healthy API servers.
        from kubernetes import client

        api = cluster.workload_client()
        try:
            for _ in range(6):
                assert len(client.CoreV1Api(api).list_node(_request_timeout=5).items) == MACHINES
        finally:
            api.close()
    finally:
        cluster.sim.restore(cluster.namespace, victim, Component.API_SERVER)
    wait_for("the API server to be ready again", lambda: machine.apiserver.ready(), timeout=60)  # type: ignore[union-attr]


def test_blackholed_endpoint_hangs_and_comes_back(cluster: SimCluster) -> None:
    from kubernetes import client

    cluster.sim.blackhole_endpoint(cluster.namespace, cluster.name)
    host, port = cluster.endpoint
    api = cluster.workload_client()
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(1.0)
            sock.sendall(b"\x16\x03\x01\x00\x05hello")
            with pytest.raises(TimeoutError):
                sock.recv(1)
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - urllib3's timeout, whatever it is wrapped in
            client.CoreV1Api(api).list_node(_request_timeout=(2, 2))
        assert time.monotonic() - started >= 1.5
    finally:
        cluster.sim.restore_endpoint(cluster.namespace, cluster.name)
        api.close()
    api = cluster.workload_client()
    try:
        nodes = wait_for(
            "the endpoint to answer again",
            lambda: client.CoreV1Api(api).list_node(_request_timeout=5).items,
            timeout=15,
        )
        assert len(nodes) == MACHINES
    finally:
        api.close()


def test_fault_annotation_stops_and_restores_a_component(cluster: SimCluster) -> None:
    victim = cluster.machines[0]
    machine = cluster.sim.machine(cluster.namespace, victim)
    assert machine is not None
    key = annotation_key(Component.ETCD)
    cluster.kube.merge_patch(
        groups.LOCAL_MACHINE,
        cluster.namespace,
        victim,
        {"metadata": {"annotations": {key: "stopped"}}},
    )
    wait_for("etcd to stop", lambda: "etcd" not in machine.pids(), timeout=20)
    assert machine.faults == {Component.ETCD: Fault.STOPPED}
    cluster.kube.merge_patch(
        groups.LOCAL_MACHINE, cluster.namespace, victim, {"metadata": {"annotations": {key: None}}}
    )
    wait_for(
        "etcd to be back", lambda: machine.etcd is not None and machine.etcd.healthy(), timeout=30
    )
    assert machine.faults == {}


def test_kcp_status_renders_the_cluster(
    cluster: SimCluster, control_plane: LocalControlPlane
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kcp",
            "status",
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "-n",
            cluster.namespace,
            cluster.name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    host, port = cluster.endpoint
    assert f"Cluster/{cluster.name}" in out and f"endpoint {host}:{port}" in out
    assert f"LocalCluster/{cluster.name}" in out
    assert f"KubeadmControlPlane/{cluster.name}-control-plane" in out
    for machine in cluster.machines:
        line = next(line for line in out.splitlines() if f"Machine/{machine}" in line)
        assert "Running" in line and f"node {machine}" in line


def test_two_simulators_do_not_collide(
    cluster: SimCluster, control_plane: LocalControlPlane, tmp_path: Path
) -> None:
    namespace = f"sim2-{uuid.uuid4().hex[:8]}"
    kube = Kube(control_plane.api_client())
    kube.create(groups.NAMESPACE, None, {"metadata": {"name": namespace}})
    other = Simulator(
        control_plane.api_client(),
        SimOptions(namespace=namespace, kubeconfig=control_plane.kubeconfig_path),
    )
    other.start()
    try:
        second = build_cluster(other, kube, namespace, "c1", 1, tmp_path)
        other.wait_for_machine(namespace, second.machines[0], timeout=120)
        assert other.work_dir != cluster.sim.work_dir
        assert not set(other.addresses()) & set(cluster.sim.addresses())
        assert not set(other.pids().values()) & set(cluster.sim.pids().values())
        assert second.endpoint != cluster.endpoint
        # Same cluster name, same ports, different addresses: both answer.
        from kubernetes import client

        api = second.workload_client()
        try:
            nodes = client.CoreV1Api(api).list_node(_request_timeout=5).items
            assert [n.metadata.name for n in nodes] == second.machines
        finally:
            api.close()
    finally:
        pids = list(other.pids().values())
        other.stop()
        with contextlib.suppress(Exception):
            kube.delete(groups.NAMESPACE, None, namespace)
    assert not [p for p in pids if alive(p)]
    assert not other.work_dir.exists()


def test_deleting_a_machine_stops_exactly_its_processes(cluster: SimCluster) -> None:
    from kubernetes import client

    victim = cluster.machines[2]
    before = cluster.sim.pids()
    victim_pids = [pid for key, pid in before.items() if f"/{victim}/" in key]
    other_pids = [pid for key, pid in before.items() if f"/{victim}/" not in key]
    assert len(victim_pids) == 3 and len(other_pids) == 6  # etcd, kube-apiserver, kubelet
    machine = cluster.sim.machine(cluster.namespace, victim)
    assert machine is not None
    data_dir = machine.dir
    assert data_dir.exists()

    cluster.kube.delete(groups.MACHINE, cluster.namespace, victim)
    wait_for(
        "the Machine and LocalMachine to be gone",
        lambda: (
            cluster.kube.get(groups.MACHINE, cluster.namespace, victim) is None
            and cluster.kube.get(groups.LOCAL_MACHINE, cluster.namespace, victim) is None
        ),
        timeout=60,
    )
    assert not [pid for pid in victim_pids if alive(pid)]
    assert all(alive(pid) for pid in other_pids)
    assert sorted(cluster.sim.pids().values()) == sorted(other_pids)
    assert not data_dir.exists()
    assert cluster.kube.get(groups.KUBEADM_CONFIG, cluster.namespace, victim) is None
    # Removing the etcd member is kcp's job: the simulator leaves it listed (and unreachable).
    others = [cluster.etcd_endpoint(m) for m in cluster.machines[:2]]
    status = cluster_status(others, tls=cluster.etcd_tls(), timeouts=QUICK, transport="grpc")
    assert sorted(m.name for m in status.members) == sorted(cluster.machines)
    member = status.member(victim)
    assert member is not None and not member.reachable
    api = cluster.workload_client()
    try:
        names = wait_for(
            "the node to be deleted",
            lambda: (
                (n := [x.metadata.name for x in client.CoreV1Api(api).list_node().items])
                and victim not in n
                and n
            ),
            timeout=20,
        )
        assert sorted(names) == sorted(cluster.machines[:2])
    finally:
        api.close()


def test_run_dev_applies_samples_shows_a_table_and_stops_everything(
    control_plane: LocalControlPlane,
) -> None:
    import io

    from kcp.sim.dev import DevEnvironment, DevOptions, run_dev

    namespace = f"dev-{uuid.uuid4().hex[:8]}"
    out = io.StringIO()
    seen: list[DevEnvironment] = []

    class Stopped:
        stopped = False

        def stop(self) -> None:
            Stopped.stopped = True

    def factory(env: DevEnvironment) -> Stopped:
        seen.append(env)
        env.notes.append("controller: a stand-in")
        return Stopped()

    code = run_dev(
        factory,
        DevOptions(
            kubeconfig=control_plane.kubeconfig_path,
            namespace=namespace,
            watch_namespace=namespace,
            duration=1.0,
            refresh=0.5,
            out=out,
            log_to_file=False,
            handle_signals=False,
        ),
    )
    text = out.getvalue()
    assert code == 0
    assert f"KUBECONFIG={control_plane.kubeconfig_path}" in text
    assert "controller: a stand-in" in text
    assert f"{namespace}/ha " in text and f"{namespace}/single " in text
    assert "replicas desired 3" in text and "replicas desired 1" in text
    # Cluster API's core and kubeadm bootstrap controllers ran beside the simulator, and
    # stopped with it.
    capi_pids = [int(pid) for pid in re.findall(r"Cluster API v\S+ capi-\S+: pid (\d+)", text)]
    assert len(capi_pids) == 2, text
    assert not [pid for pid in capi_pids if alive(pid)]
    assert Stopped.stopped
    assert seen and not seen[0].simulator.work_dir.exists()
    kube = Kube(control_plane.api_client())
    assert kube.get(groups.CLUSTER, namespace, "ha") is not None
    with contextlib.suppress(Exception):
        kube.delete(groups.NAMESPACE, None, namespace)
