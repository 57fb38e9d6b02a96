"""A real, container-free Kubernetes control plane on loopback: etcd + kube-apiserver.

Both speak TLS: etcd requires client certificates from its own CA, the API server
serves a certificate for 127.0.0.1 and trusts an admin client certificate
(`system:masters`) written into a kubeconfig. Everything lives in one temporary
directory that is removed on `stop()`; every process is stopped on exit or signal.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from kcp import certs
from kcp.testing import binaries
from kcp.testing.etcd_launch import TLSFiles, etcd_argv
from kcp.testing.processes import ManagedProcess, free_port, port_open, wait_until

CRD_DIR = Path(__file__).resolve().parents[2] / "config" / "crd" / "bases"
HOST = "127.0.0.1"
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
"""Who the API server is to kubelets (port-forward, logs, exec), as kubeadm names it: a
kubelet standing in for a Node of this cluster accepts this client certificate."""


@dataclass
class ControlPlaneOptions:
    """How to start the local control plane; the defaults are what tests use."""

    # Streaming lists (`sendInitialEvents`) need the WatchList gate; tests start
    # one server with it off to exercise the paginated-list fallback.
    watch_list: bool = True
    # kcp's own CRD manifests (KubeadmControlPlane, the simulator's Local* kinds),
    # installed once the API server is ready (None: none).
    crd_dir: Path | None = CRD_DIR
    # Also install Cluster API's CRDs from the pinned module (core and the kubeadm
    # bootstrap provider), as a management cluster running them has.
    cluster_api_crds: bool = True
    # Where certificates, kubeconfig, data and logs go (None: a new temp dir).
    work_dir: Path | None = None
    # Keep `work_dir` after stop (logs for debugging); temp dirs are removed otherwise.
    keep_work_dir: bool = False
    start_timeout: float = 120.0
    extra_apiserver_args: list[str] = field(default_factory=list)


class LocalControlPlane:
    """Start with `start()` or a `with` block; read `kubeconfig_path` and `server_url`."""

    def __init__(self, options: ControlPlaneOptions | None = None) -> None:
        self.options = options or ControlPlaneOptions()
        self._own_work_dir = self.options.work_dir is None
        self.work_dir = self.options.work_dir or Path(tempfile.mkdtemp(prefix="kcp-envtest-"))
        self.bin = binaries.ensure()
        self.etcd_client_port = free_port(HOST)
        self.etcd_peer_port = free_port(HOST)
        self.apiserver_port = free_port(HOST)
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._write_credentials()

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self.start_etcd()
            self.start_apiserver()
            crd_files: list[Path] = []
            if self.options.cluster_api_crds:
                crd_files += binaries.ensure_cluster_api().management_crds()
            if self.options.crd_dir is not None:
                crd_files += sorted(self.options.crd_dir.glob("*.yaml"))
            if crd_files:
                self.install_crd_files(crd_files)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in (self._apiserver, self._etcd):
            if process is not None:
                process.stop()
        if self._own_work_dir and not self.options.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @property
    def server_url(self) -> str:
        return f"https://{HOST}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"https://{HOST}:{self.etcd_client_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig"

    @property
    def apiserver_pid(self) -> int | None:
        return self._apiserver.pid if self._apiserver is not None else None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self._etcd, self._apiserver) if p is not None and p.pid]

    def start_etcd(self) -> None:
        tls = self.work_dir / "pki"
        peer_url = f"http://{HOST}:{self.etcd_peer_port}"
        self._etcd = ManagedProcess(
            "etcd",
            etcd_argv(
                self.bin.etcd,
                name="default",
                data_dir=self.work_dir / "etcd-data",
                client_url=self.etcd_url,
                # One member, peers never connect: plain HTTP spares a peer certificate.
                peer_url=peer_url,
                initial_cluster=f"default={peer_url}",
                client_tls=TLSFiles(
                    tls / "etcd-ca.crt", tls / "etcd-server.crt", tls / "etcd-server.key"
                ),
            ),
            log_path=self.work_dir / "logs" / "etcd.log",
        )
        self._etcd.start()
        wait_until(
            lambda: port_open(HOST, self.etcd_client_port),
            timeout=30,
            what="etcd to listen",
            process=self._etcd,
        )

    def start_apiserver(self) -> None:
        tls = self.work_dir / "pki"
        gate = "true" if self.options.watch_list else "false"
        self._apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(self.bin.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--etcd-cafile={tls / 'etcd-ca.crt'}",
                f"--etcd-certfile={tls / 'apiserver-etcd-client.crt'}",
                f"--etcd-keyfile={tls / 'apiserver-etcd-client.key'}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={tls}",
                f"--tls-cert-file={tls / 'apiserver.crt'}",
                f"--tls-private-key-file={tls / 'apiserver.key'}",
                f"--client-ca-file={tls / 'ca.crt'}",
                f"--service-account-key-file={tls / 'sa.pub'}",
                f"--service-account-signing-key-file={tls / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                f"--feature-gates=WatchList={gate}",
                "--endpoint-reconciler-type=none",
                # Port-forwards to Pods of Nodes a test registers reach their kubelets at the
                # Node's InternalIP, verified against the cluster CA, as kubeadm sets it up.
                f"--kubelet-client-certificate={tls / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={tls / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={tls / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                "--v=0",
                *self.options.extra_apiserver_args,
            ],
            log_path=self.work_dir / "logs" / "kube-apiserver.log",
        )
        self._apiserver.start()
        wait_until(
            self._apiserver_ready,
            timeout=self.options.start_timeout,
            what="kube-apiserver /readyz",
            interval=0.25,
            process=self._apiserver,
        )

    def stop_apiserver(self) -> None:
        if self._apiserver is not None:
            self._apiserver.stop()

    def restart_apiserver(self) -> None:
        """Stop and start the API server on the same port (watches see the connection drop)."""
        self.stop_apiserver()
        self.start_apiserver()

    # -- clients ----------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        tls = self.work_dir / "pki"
        context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        context.load_cert_chain(str(tls / "admin.crt"), str(tls / "admin.key"))
        return context

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` authenticated as cluster admin."""
        from kubernetes import client

        tls = self.work_dir / "pki"
        configuration = client.Configuration()
        configuration.host = self.server_url
        configuration.ssl_ca_cert = str(tls / "ca.crt")
        configuration.cert_file = str(tls / "admin.crt")
        configuration.key_file = str(tls / "admin.key")
        return client.ApiClient(configuration)

    def install_crds(self, crd_dir: Path, timeout: float = 60.0) -> list[str]:
        """Create (or update) every CRD under `crd_dir` and wait until all are Established."""
        return self.install_crd_files(sorted(crd_dir.glob("*.yaml")), timeout=timeout)

    def install_crd_files(self, paths: list[Path], timeout: float = 60.0) -> list[str]:
        """Create (or update) every CRD in `paths` and wait until all are Established."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = client.ApiextensionsV1Api(self.api_client())
        names: list[str] = []
        for path in paths:
            for document in yaml.safe_load_all(path.read_text()):
                if not document or document.get("kind") != "CustomResourceDefinition":
                    continue
                name = document["metadata"]["name"]
                names.append(name)
                try:
                    api.create_custom_resource_definition(document)
                except ApiException as error:
                    if error.status != 409:
                        raise
                    current = api.read_custom_resource_definition(name)
                    assert current.metadata is not None
                    document["metadata"]["resourceVersion"] = current.metadata.resource_version
                    api.replace_custom_resource_definition(name, document)

        def established() -> bool:
            for name in names:
                crd = api.read_custom_resource_definition(name)
                found = crd.status.conditions if crd.status is not None else None
                conditions = {c.type: c.status for c in (found or [])}
                if conditions.get("Established") != "True":
                    return False
            return True

        wait_until(established, timeout=timeout, what=f"CRDs {names} to be Established")
        return names

    def compact_etcd(self) -> int:
        """Compact the management etcd at its current revision; old watches then get 410."""
        import etcd3

        tls = self.work_dir / "pki"
        client = etcd3.client(
            host=HOST,
            port=self.etcd_client_port,
            ca_cert=str(tls / "etcd-ca.crt"),
            cert_cert=str(tls / "apiserver-etcd-client.crt"),
            cert_key=str(tls / "apiserver-etcd-client.key"),
        )
        try:
            revision = int(client.get_response("/").header.revision)
            client.compact(revision, physical=True)
            return revision
        finally:
            client.close()

    def kubeconfig_for(
        self,
        user: str,
        *,
        groups: tuple[str, ...] = ("system:masters",),
        algorithm: certs.KeyAlgorithm = "ecdsa-p256",
        path: Path | None = None,
    ) -> tuple[Path, certs.KeyPair]:
        """A kubeconfig for client certificate user `user` (a fresh key), and that key pair.

        Written to `path`, or beside the admin's. Each of two controllers under comparison
        gets its own user, so the API server's audit log tells their requests apart
        whatever client library they use.
        """
        tls = self.work_dir / "pki"
        ca = certs.load_key_pair(
            (tls / "ca.crt").read_bytes(), (tls / "ca.key").read_bytes(), require_ca=True
        )
        pair = certs.issue_certificate(
            ca, common_name=user, organizations=groups, algorithm=algorithm
        )
        path = path or self.work_dir / f"kubeconfig-{user}"
        _write_private(
            path,
            certs.build_kubeconfig(
                cluster_name="kcp-envtest",
                server=self.server_url,
                ca_pem=ca.cert_pem,
                client_cert_pem=pair.cert_pem,
                client_key_pem=pair.key_pem,
                user_name=user,
            ),
        )
        return path, pair

    # -- internals --------------------------------------------------------------------

    def _apiserver_ready(self) -> bool:
        request = urllib.request.Request(f"{self.server_url}/readyz")  # noqa: S310
        with urllib.request.urlopen(request, context=self.ssl_context(), timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)

    def _write_credentials(self) -> None:
        tls = self.work_dir / "pki"
        tls.mkdir(parents=True, exist_ok=True)
        # ECDSA keys: these are throwaway test credentials and RSA would cost seconds.
        algorithm: certs.KeyAlgorithm = "ecdsa-p256"
        server: tuple[certs.Usage, ...] = ("server",)
        server_and_client: tuple[certs.Usage, ...] = ("server", "client")
        ca = certs.new_certificate_authority("kcp-envtest-ca", algorithm=algorithm)
        etcd_ca = certs.new_certificate_authority("kcp-envtest-etcd-ca", algorithm=algorithm)
        files: dict[str, certs.KeyPair] = {
            "ca": ca,
            "etcd-ca": etcd_ca,
            "apiserver": certs.issue_certificate(
                ca,
                common_name="kube-apiserver",
                usages=server,
                dns_names=("localhost", "kubernetes", "kubernetes.default"),
                ip_addresses=(HOST,),
                algorithm=algorithm,
            ),
            "admin": certs.issue_certificate(
                ca,
                common_name="kubernetes-admin",
                organizations=("system:masters",),
                algorithm=algorithm,
            ),
            "etcd-server": certs.issue_certificate(
                etcd_ca,
                common_name="etcd",
                usages=server_and_client,
                dns_names=("localhost",),
                ip_addresses=(HOST,),
                algorithm=algorithm,
            ),
            "apiserver-etcd-client": certs.issue_certificate(
                etcd_ca, common_name="kube-apiserver-etcd-client", algorithm=algorithm
            ),
            "apiserver-kubelet-client": certs.issue_certificate(
                ca,
                common_name=KUBELET_CLIENT_CN,
                organizations=("kubeadm:cluster-admins",),
                algorithm=algorithm,
            ),
        }
        for name, pair in files.items():
            _write_private(tls / f"{name}.crt", pair.cert_pem)
            _write_private(tls / f"{name}.key", pair.key_pem)
        sa_public, sa_private = certs.new_service_account_key()
        _write_private(tls / "sa.pub", sa_public)
        _write_private(tls / "sa.key", sa_private)
        kubeconfig = certs.build_kubeconfig(
            cluster_name="kcp-envtest",
            server=self.server_url,
            ca_pem=ca.cert_pem,
            client_cert_pem=files["admin"].cert_pem,
            client_key_pem=files["admin"].key_pem,
            user_name="kcp-envtest-admin",
        )
        _write_private(self.kubeconfig_path, kubeconfig)


def _write_private(path: Path, content: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(content)
