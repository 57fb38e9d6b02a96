"""A simulated cluster's certificate authorities, and the files a kubeadm node would hold.

A machine's authorities come from its bootstrap data (`kcp.sim.bootdata`),
which CABPK filled from the cluster's Secrets; from them it gets what kubeadm
writes under `/etc/kubernetes/pki`: etcd server and peer certificates, the API
server's serving certificate, its etcd, kubelet and front-proxy client certificates,
and the service-account key pair. The simulator's own helpers (etcd queries,
the dashboard) load the same authorities from the Secrets `<cluster>-ca`,
`<cluster>-etcd` and `<cluster>-sa` (`load_cluster_pki`). These files are the
simulated node's disk; the product itself never writes key material.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kcp import certs
from kcp.certs import KeyAlgorithm, KeyPair, SecretPurpose, Usage
from kcp.etcd import EtcdTLS

__all__ = [
    "ADMIN_CN",
    "APISERVER_KUBELET_CLIENT_CN",
    "SKIP_RSA_VALIDATION",
    "ClusterPKI",
    "MachineFiles",
    "PKINotReady",
    "load_cluster_pki",
    "service_ip",
    "write_machine_files",
    "write_private",
]

SKIP_RSA_VALIDATION = True
"""The simulated machines load their cluster's keys without OpenSSL's full RSA consistency
check: it cost as much as generating the key, and was a third of the simulator's CPU while
a fleet came up. Each key is still matched against its certificate (or public half); a
broken key fails where a machine would notice it, when it signs."""

SecretReader = Callable[[str], Mapping[str, str] | None]
"""Reads the `data` of a Secret by name in the cluster's namespace; None when absent."""


class PKINotReady(RuntimeError):
    """A Secret the simulator needs does not exist yet (kcp creates them; wait)."""


@dataclass(frozen=True)
class ClusterPKI:
    """The cluster's CA, etcd CA, service-account key and (if known) front-proxy CA.

    A machine gets them from its bootstrap data; the simulator's own helpers
    load them from the cluster's Secrets.
    """

    ca: KeyPair = field(repr=False)
    etcd_ca: KeyPair = field(repr=False)
    sa_public_pem: bytes = field(repr=False)
    sa_private_pem: bytes = field(repr=False)
    front_proxy_ca: KeyPair | None = field(default=None, repr=False)

    @property
    def fingerprints(self) -> tuple[str, str]:
        """(CA, etcd CA) certificate fingerprints: a changed Secret means new material."""
        return self.ca.fingerprint, self.etcd_ca.fingerprint


def load_cluster_pki(namespace: str, cluster: str, read: SecretReader) -> ClusterPKI:
    """Load and check the three Secrets; `PKINotReady` names the first one missing.

    A Secret with unusable content raises `kcp.certs.CertificateError`, whose
    message names the Secret and says what to put there.
    """
    loaded: dict[SecretPurpose, dict[str, bytes]] = {}
    for purpose in (SecretPurpose.CLUSTER_CA, SecretPurpose.ETCD, SecretPurpose.SERVICE_ACCOUNT):
        name = certs.secret_name(cluster, purpose)
        data = read(name)
        if data is None:
            raise PKINotReady(f"waiting for Secret {namespace}/{name}")
        loaded[purpose] = certs.decode_secret_data(data, secret_name=f"{namespace}/{name}")
    ca = certs.key_pair_from_secret_data(
        loaded[SecretPurpose.CLUSTER_CA],
        secret_name=f"{namespace}/{certs.secret_name(cluster, SecretPurpose.CLUSTER_CA)}",
        skip_rsa_validation=SKIP_RSA_VALIDATION,
    )
    etcd_ca = certs.key_pair_from_secret_data(
        loaded[SecretPurpose.ETCD],
        secret_name=f"{namespace}/{certs.secret_name(cluster, SecretPurpose.ETCD)}",
        skip_rsa_validation=SKIP_RSA_VALIDATION,
    )
    sa_name = f"{namespace}/{certs.secret_name(cluster, SecretPurpose.SERVICE_ACCOUNT)}"
    sa_key = certs.service_account_key_from_secret_data(
        loaded[SecretPurpose.SERVICE_ACCOUNT],
        secret_name=sa_name,
        skip_rsa_validation=SKIP_RSA_VALIDATION,
    )
    return ClusterPKI(
        ca=ca,
        etcd_ca=etcd_ca,
        sa_public_pem=certs.encode_public_key(sa_key),
        sa_private_pem=certs.encode_private_key(sa_key),
    )


def service_ip(service_cidr: str) -> str:
    """The first address of the service range: the `kubernetes` Service's cluster IP."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    return str(network.network_address + 1)


@dataclass(frozen=True)
class MachineFiles:
    """Paths of one machine's certificates and keys (kubeadm's layout under `pki/`)."""

    dir: Path
    apiserver_not_after: datetime | None = None
    """When the API server's serving certificate expires (what kcp's rollout-before reads)."""
    front_proxy: bool = False
    """Whether the front-proxy CA and client certificate were written (the CA was known)."""

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def etcd_ca_crt(self) -> Path:
        return self.dir / "etcd" / "ca.crt"

    @property
    def etcd_server_crt(self) -> Path:
        return self.dir / "etcd" / "server.crt"

    @property
    def etcd_server_key(self) -> Path:
        return self.dir / "etcd" / "server.key"

    @property
    def etcd_peer_crt(self) -> Path:
        return self.dir / "etcd" / "peer.crt"

    @property
    def etcd_peer_key(self) -> Path:
        return self.dir / "etcd" / "peer.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def apiserver_etcd_client_crt(self) -> Path:
        return self.dir / "apiserver-etcd-client.crt"

    @property
    def apiserver_etcd_client_key(self) -> Path:
        return self.dir / "apiserver-etcd-client.key"

    @property
    def apiserver_kubelet_client_crt(self) -> Path:
        return self.dir / "apiserver-kubelet-client.crt"

    @property
    def apiserver_kubelet_client_key(self) -> Path:
        return self.dir / "apiserver-kubelet-client.key"

    @property
    def front_proxy_ca_crt(self) -> Path:
        return self.dir / "front-proxy-ca.crt"

    @property
    def front_proxy_client_crt(self) -> Path:
        return self.dir / "front-proxy-client.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        return self.dir / "front-proxy-client.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def admin_crt(self) -> Path:
        """The node's cluster-admin client certificate (what kubeadm embeds in super-admin.conf)."""
        return self.dir / "super-admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "super-admin.key"

    def etcd_client_tls(self, *, source: str) -> EtcdTLS:
        """The API server's etcd client identity, as kubeadm uses it to add a member on join."""
        return EtcdTLS(
            ca_pem=self.etcd_ca_crt.read_bytes(),
            cert_pem=self.apiserver_etcd_client_crt.read_bytes(),
            key_pem=self.apiserver_etcd_client_key.read_bytes(),
            ca_source=source,
        )


ADMIN_CN = "kubernetes-super-admin"
"""The node's admin identity: in `system:masters`, as kubeadm's super-admin.conf."""
APISERVER_KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
"""Who the API server is to kubelets (port-forward, logs, exec), as kubeadm names it."""
CLUSTER_ADMINS_GROUP = "kubeadm:cluster-admins"
"""The group kubeadm (since v1.29) puts the API server's kubelet client certificate in."""


def write_machine_files(
    pki: ClusterPKI,
    pki_dir: Path,
    *,
    node_name: str,
    address: str,
    endpoint_host: str,
    service_cidr: str,
    extra_sans: Sequence[str] = (),
    etcd_server_sans: Sequence[str] = (),
    etcd_peer_sans: Sequence[str] = (),
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> MachineFiles:
    """Issue and write everything one control-plane node needs, as `kubeadm init/join` does.

    `pki` is the node's copy of the cluster's authorities (from its bootstrap
    data); `extra_sans` are the API server's `certSANs`, `etcd_*_sans` etcd's.
    """
    (pki_dir / "etcd").mkdir(parents=True, exist_ok=True, mode=0o700)
    dns_sans, ip_sans = _split_sans(extra_sans)
    etcd_usages: tuple[Usage, ...] = ("server", "client")
    peer_usages: tuple[Usage, ...] = ("peer",)
    server_usages: tuple[Usage, ...] = ("server",)
    client_usages: tuple[Usage, ...] = ("client",)

    def etcd_names(extra: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        dns, ips = _split_sans(extra)
        return (
            tuple(dict.fromkeys((node_name, "localhost", *dns))),
            tuple(dict.fromkeys((address, "127.0.0.1", *ips))),
        )

    server_dns, server_ips = etcd_names(etcd_server_sans)
    peer_dns, peer_ips = etcd_names(etcd_peer_sans)
    etcd_server = certs.issue_certificate(
        pki.etcd_ca,
        common_name=node_name,
        usages=etcd_usages,
        dns_names=server_dns,
        ip_addresses=server_ips,
        algorithm=algorithm,
    )
    etcd_peer = certs.issue_certificate(
        pki.etcd_ca,
        common_name=node_name,
        usages=peer_usages,
        dns_names=peer_dns,
        ip_addresses=peer_ips,
        algorithm=algorithm,
    )
    apiserver = certs.issue_certificate(
        pki.ca,
        common_name="kube-apiserver",
        usages=server_usages,
        dns_names=tuple(
            dict.fromkeys(
                (
                    node_name,
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                    "localhost",
                    *dns_sans,
                )
            )
        ),
        ip_addresses=tuple(
            dict.fromkeys((service_ip(service_cidr), address, endpoint_host, "127.0.0.1", *ip_sans))
        ),
        algorithm=algorithm,
    )
    etcd_client = certs.issue_certificate(
        pki.etcd_ca, common_name="kube-apiserver-etcd-client", algorithm=algorithm
    )
    admin = certs.issue_certificate(
        pki.ca,
        common_name=ADMIN_CN,
        organizations=("system:masters",),
        usages=client_usages,
        algorithm=algorithm,
    )
    kubelet_client = certs.issue_certificate(
        pki.ca,
        common_name=APISERVER_KUBELET_CLIENT_CN,
        organizations=(CLUSTER_ADMINS_GROUP,),
        usages=client_usages,
        algorithm=algorithm,
    )
    files = MachineFiles(
        pki_dir, apiserver_not_after=apiserver.not_after, front_proxy=pki.front_proxy_ca is not None
    )
    contents: dict[Path, bytes] = {
        files.ca_crt: pki.ca.cert_pem,
        files.etcd_ca_crt: pki.etcd_ca.cert_pem,
        files.etcd_server_crt: etcd_server.cert_pem,
        files.etcd_server_key: etcd_server.key_pem,
        files.etcd_peer_crt: etcd_peer.cert_pem,
        files.etcd_peer_key: etcd_peer.key_pem,
        files.apiserver_crt: apiserver.cert_pem,
        files.apiserver_key: apiserver.key_pem,
        files.apiserver_etcd_client_crt: etcd_client.cert_pem,
        files.apiserver_etcd_client_key: etcd_client.key_pem,
        files.apiserver_kubelet_client_crt: kubelet_client.cert_pem,
        files.apiserver_kubelet_client_key: kubelet_client.key_pem,
        files.sa_pub: pki.sa_public_pem,
        files.sa_key: pki.sa_private_pem,
        files.admin_crt: admin.cert_pem,
        files.admin_key: admin.key_pem,
    }
    if pki.front_proxy_ca is not None:
        front_proxy_client = certs.issue_certificate(
            pki.front_proxy_ca,
            common_name="front-proxy-client",
            usages=client_usages,
            algorithm=algorithm,
        )
        contents[files.front_proxy_ca_crt] = pki.front_proxy_ca.cert_pem
        contents[files.front_proxy_client_crt] = front_proxy_client.cert_pem
        contents[files.front_proxy_client_key] = front_proxy_client.key_pem
    for path, data in contents.items():
        write_private(path, data)
    return files


def _split_sans(sans: Sequence[str]) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    for san in sans:
        try:
            ipaddress.ip_address(san)
        except ValueError:
            dns.append(san)
        else:
            ips.append(san)
    return dns, ips


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
