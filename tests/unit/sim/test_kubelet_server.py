"""The kubelet's side of a port-forward: its certificates, its flags, what the Node says."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kcp import certs
from kcp.sim.apiserver import APIServer
from kcp.sim.kubelet_server import KUBELET_PORT, KubeletServer, write_kubelet_files
from kcp.sim.launcher import Launcher
from kcp.sim.pki import ClusterPKI, write_machine_files
from kcp.sim.process import SimProcess
from kcp.sim.workload import node_status
from kcp.testing import binaries


def _pki() -> ClusterPKI:
    public, private = certs.new_service_account_key("ecdsa-p256")
    return ClusterPKI(
        ca=certs.new_certificate_authority("kubernetes", algorithm="ecdsa-p256"),
        etcd_ca=certs.new_certificate_authority("etcd-ca", algorithm="ecdsa-p256"),
        sa_public_pem=public,
        sa_private_pem=private,
    )


def _names(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_the_api_server_reaches_kubelets_as_kubeadm_configures_it(tmp_path: Path) -> None:
    pki = _pki()
    files = write_machine_files(
        pki,
        tmp_path / "pki",
        node_name="m1",
        address="127.1.2.3",
        endpoint_host="127.9.9.9",
        service_cidr="10.96.0.0/12",
    )
    client = x509.load_pem_x509_certificate(files.apiserver_kubelet_client_crt.read_bytes())
    assert _names(client, NameOID.COMMON_NAME) == ["kube-apiserver-kubelet-client"]
    assert _names(client, NameOID.ORGANIZATION_NAME) == ["kubeadm:cluster-admins"]
    assert client.issuer == x509.load_pem_x509_certificate(pki.ca.cert_pem).subject
    launcher = Launcher()
    try:
        server = APIServer(
            address="127.1.2.3",
            etcd_url="https://127.1.2.3:2379",
            files=files,
            process=SimProcess("kube-apiserver", launcher, tmp_path / "log"),
            binary=Path("kube-apiserver"),
            service_cidr="10.96.0.0/12",
        )
        argv = server._argv()
    finally:
        launcher.close()
    assert f"--kubelet-client-certificate={files.apiserver_kubelet_client_crt}" in argv
    assert f"--kubelet-client-key={files.apiserver_kubelet_client_key}" in argv
    assert f"--kubelet-certificate-authority={files.ca_crt}" in argv
    assert "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname" in argv


def test_the_kubelet_serves_for_its_name_and_address_and_forwards_what_it_is_told(
    tmp_path: Path,
) -> None:
    pki = _pki()
    (tmp_path / "ca.crt").write_bytes(pki.ca.cert_pem)
    files = write_kubelet_files(
        pki.ca, tmp_path / "kubelet", tmp_path / "ca.crt", node_name="m1", address="127.1.2.3"
    )
    serving = x509.load_pem_x509_certificate(files.serving_crt.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["m1"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.1.2.3")]
    usages = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    client = certs.issue_certificate(pki.ca, common_name="c", algorithm="ecdsa-p256")
    (tmp_path / "client.crt").write_bytes(client.cert_pem)
    (tmp_path / "client.key").write_bytes(client.key_pem)
    launcher = Launcher()
    try:
        server = KubeletServer(
            address="127.1.2.3",
            files=files,
            forwards={"etcd-m1:2379": "127.1.2.3:2379"},
            process=SimProcess("kubelet", launcher, tmp_path / "log"),
            binary=Path("kubelet-portforward"),
            client_cert=tmp_path / "client.crt",
            client_key=tmp_path / "client.key",
        )
        argv = server._argv()
        assert not server.ready()  # not started
    finally:
        launcher.close()
    assert f"--port={KUBELET_PORT}" in argv and "--address=127.1.2.3" in argv
    assert f"--client-ca-file={tmp_path / 'ca.crt'}" in argv
    assert "--allowed-user=kube-apiserver-kubelet-client" in argv
    assert "--forward=etcd-m1:2379=127.1.2.3:2379" in argv


def test_the_node_tells_the_api_server_where_its_kubelet_is() -> None:
    status = node_status("m1", "127.1.2.3", "v1.34.4", datetime(2026, 1, 1, tzinfo=UTC))
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": KUBELET_PORT}}
    assert status["addresses"][0] == {"type": "InternalIP", "address": "127.1.2.3"}


def test_the_helper_is_built_on_the_kubelet_of_the_pinned_kubernetes_release() -> None:
    kubernetes = binaries.kubernetes_version()  # v1.34.4
    assert binaries.kubelet_library_version() == f"v0.{kubernetes.split('.', 1)[1]}"
    # Its own cache entry: editing the helper never rebuilds kube-apiserver and etcd.
    assert binaries.kubelet_portforward_path().parent != binaries.cache_dir()
