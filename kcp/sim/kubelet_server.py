"""One machine's kubelet API, as far as a port-forward through the API server needs it.

`kubectl port-forward` (or a controller's tunnel) asks the workload API server
for `pods/<name>/portforward`; the API server proxies it to the kubelet of the
Pod's Node (its InternalIP, the Node's kubelet port), which connects to the
port inside the Pod. Here that kubelet is `kubelet-portforward` (built by
`kcp.testing.binaries` from `hack/testbin/kubelet`, on the kubelet's own
streaming library, SPDY and websocket): it serves `/portForward/...` on the
machine's address at 10250 and maps the machine's own static pods to its
processes: `etcd-<node>` 2379 to the etcd member's client address,
`kube-apiserver-<node>` 6443 to the API server. Any other pod or port is
refused on the stream's error channel with a message naming what it does
forward (`kubectl port-forward` prints it).

As a kubeadm kubelet with x509 authentication, it serves a certificate the
cluster CA signed (SANs: the node's name and address) and accepts only client
certificates from that CA with the API server's kubelet client name.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kcp import certs
from kcp.certs import KeyAlgorithm, KeyPair, Usage
from kcp.sim.pki import APISERVER_KUBELET_CLIENT_CN, write_private
from kcp.sim.process import SimProcess

__all__ = [
    "KUBELET_PORT",
    "KubeletFiles",
    "KubeletServer",
    "kubelet_argv",
    "write_kubelet_files",
]

KUBELET_PORT = 10250
_READY_TIMEOUT = 2.0


@dataclass(frozen=True)
class KubeletFiles:
    """Where the kubelet keeps its serving certificate (kubeadm: `/var/lib/kubelet/pki`)."""

    dir: Path
    ca_crt: Path
    """The cluster CA: its client certificates are the ones accepted."""

    @property
    def serving_crt(self) -> Path:
        return self.dir / "kubelet.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "kubelet.key"


def write_kubelet_files(
    ca: KeyPair,
    pki_dir: Path,
    ca_crt: Path,
    *,
    node_name: str,
    address: str,
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> KubeletFiles:
    """Issue the kubelet's serving certificate from the cluster CA (`ca_crt` is its file)."""
    files = KubeletFiles(pki_dir, ca_crt)
    usages: tuple[Usage, ...] = ("server",)
    serving = certs.issue_certificate(
        ca,
        common_name=f"system:node:{node_name}",
        organizations=("system:nodes",),
        usages=usages,
        dns_names=(node_name,),
        ip_addresses=(address,),
        algorithm=algorithm,
    )
    write_private(files.serving_crt, serving.cert_pem)
    write_private(files.serving_key, serving.key_pem)
    return files


def kubelet_argv(
    binary: Path,
    *,
    address: str,
    files: KubeletFiles,
    forwards: Mapping[str, str],
    allowed_user: str = APISERVER_KUBELET_CLIENT_CN,
) -> list[str]:
    """The `kubelet-portforward` command line: serve on `address`, forward `forwards`."""
    return [
        str(binary),
        f"--address={address}",
        f"--port={KUBELET_PORT}",
        f"--tls-cert-file={files.serving_crt}",
        f"--tls-private-key-file={files.serving_key}",
        f"--client-ca-file={files.ca_crt}",
        f"--allowed-user={allowed_user}",
        *(f"--forward={pod}={target}" for pod, target in sorted(forwards.items())),
    ]


class KubeletServer:
    """The `kubelet-portforward` process of one machine."""

    def __init__(
        self,
        *,
        address: str,
        files: KubeletFiles,
        forwards: Mapping[str, str],
        process: SimProcess,
        binary: Path,
        client_cert: Path,
        client_key: Path,
    ) -> None:
        self.address = address
        self.files = files
        self.forwards = dict(forwards)
        """`[namespace/]pod:port` (namespace kube-system if none) -> `host:port` it reaches."""
        self.process = process
        self.binary = binary
        self._context = ssl.create_default_context(cafile=str(files.ca_crt))
        self._context.load_cert_chain(str(client_cert), str(client_key))
        """The API server's kubelet client identity: `ready()` checks what the API server
        will meet (the serving certificate for the address, client certificates accepted)."""

    @property
    def url(self) -> str:
        return f"https://{self.address}:{KUBELET_PORT}"

    def start(self) -> None:
        self.process.start(self._argv())

    def ready(self) -> bool:
        """Whether `/healthz` answers 200 over the TLS the API server will use."""
        if not self.process.running or self.process.frozen:
            return False
        try:
            with urllib.request.urlopen(  # noqa: S310 - https on a loopback address we chose
                f"{self.url}/healthz", context=self._context, timeout=_READY_TIMEOUT
            ) as response:
                return bool(response.status == 200)
        except (OSError, ssl.SSLError):
            return False

    def _argv(self) -> list[str]:
        return kubelet_argv(
            self.binary, address=self.address, files=self.files, forwards=self.forwards
        )
