"""Reading a Machine's certificate expiry from its API server, verified against the cluster CA."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from kcp.api import labels
from kcp.api.objects import MachineView
from kcp.certs import KeyPair, issue_certificate, new_certificate_authority
from kcp.controlplane.expiry import (
    apiserver_endpoint,
    expiry_annotation,
    recorded_expiry,
    serving_certificate_expiry,
)
from kcp.etcd import EtcdTunnelError, PortForwardDialer, TunnelLoop
from tests.unit.controlplane.builders import NOW, machine, ts
from tests.unit.etcd.portforward_servers import ForwardingServer


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_certificate_authority("kubernetes", algorithm="ecdsa-p256")


@pytest.fixture
def server(ca: KeyPair) -> Iterator[tuple[tuple[str, int], KeyPair]]:
    serving = issue_certificate(
        ca,
        common_name="kube-apiserver",
        usages=("server",),
        ip_addresses=("127.0.0.1",),
        validity=timedelta(days=42),
        algorithm="ecdsa-p256",
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    fd = os.memfd_create("serving", os.MFD_CLOEXEC)  # key material never touches a disk
    try:
        os.write(fd, serving.cert_pem + serving.key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2], serving
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_expiry_is_read_from_the_served_certificate(
    server: tuple[tuple[str, int], KeyPair], ca: KeyPair
) -> None:
    endpoint, serving = server
    assert serving_certificate_expiry(endpoint, ca.cert_pem) == serving.not_after


def test_a_certificate_from_another_ca_is_refused(server: tuple[tuple[str, int], KeyPair]) -> None:
    endpoint, _ = server
    other = new_certificate_authority("someone-else", algorithm="ecdsa-p256")
    with pytest.raises(ssl.SSLError):
        serving_certificate_expiry(endpoint, other.cert_pem)


def test_endpoint_comes_from_the_static_pod_annotation() -> None:
    m = MachineView(machine("a"))
    pod = {
        "metadata": {
            "annotations": {
                "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": "127.1.2.3:6443"
            }
        }
    }
    assert apiserver_endpoint(m, {"kube-apiserver-a": pod}) == ("127.1.2.3", 6443)
    assert apiserver_endpoint(m, {}) is None
    assert (
        apiserver_endpoint(MachineView(machine("b", node=None)), {"kube-apiserver-b": pod}) is None
    )


def test_recorded_expiry_prefers_the_machine_then_its_kubeadm_config() -> None:
    config = {"metadata": expiry_annotation(NOW + timedelta(days=3))["metadata"]}
    bare = MachineView(machine("a"))
    assert recorded_expiry(bare, config) == NOW + timedelta(days=3)
    assert recorded_expiry(bare, None) is None
    own = machine("a")
    own["metadata"]["annotations"][labels.MACHINE_CERTIFICATES_EXPIRY_DATE_ANNOTATION] = ts(NOW)
    assert recorded_expiry(MachineView(own), config) == NOW


def test_through_a_port_forward_the_endpoint_is_the_kube_apiserver_pod() -> None:
    m = MachineView(machine("a"))
    annotated = {
        "metadata": {
            "annotations": {
                "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": "10.0.0.9:8443"
            }
        }
    }
    assert apiserver_endpoint(m, {"kube-apiserver-a": annotated}, access="port-forward") == (
        "kube-system/kube-apiserver-a",
        8443,
    )
    assert apiserver_endpoint(m, {"kube-apiserver-a": {}}, access="port-forward") == (
        "kube-system/kube-apiserver-a",
        6443,
    )
    assert apiserver_endpoint(m, {}, access="port-forward") is None


def test_expiry_is_read_through_a_port_forward(
    server: tuple[tuple[str, int], KeyPair], ca: KeyPair
) -> None:
    (host, port), serving = server
    api_ca = new_certificate_authority("workload-apiserver", algorithm="ecdsa-p256")
    forwards = {("kube-system", "kube-apiserver-a", 6443): f"{host}:{port}"}
    loop = TunnelLoop()
    try:
        with ForwardingServer(api_ca, forwards=forwards) as api:
            from kcp.certs import client_tls_context

            dialer = PortForwardDialer(
                loop, server=api.url, context=client_tls_context(api_ca.cert_pem)
            )
            endpoint = ("kube-system/kube-apiserver-a", 6443)
            assert serving_certificate_expiry(endpoint, ca.cert_pem, dialer=dialer) == (
                serving.not_after
            )
            with pytest.raises(EtcdTunnelError, match="Pod kube-system/kube-apiserver-b"):
                serving_certificate_expiry(
                    ("kube-system/kube-apiserver-b", 6443), ca.cert_pem, dialer=dialer
                )
    finally:
        loop.close()
