"""One machine's kube-apiserver, as kubeadm runs it, trimmed to run several on 2 cores.

It serves on the machine's own address at 6443 with a certificate the cluster
CA signed, trusts client certificates from that CA and bootstrap tokens (what
joining nodes authenticate with), signs service-account tokens with the
cluster's key, trusts the front-proxy CA for aggregated requests, reaches the
kubelets (port-forward) at their Nodes' InternalIP with a client certificate
from the cluster CA, verifying theirs against it, and stores in
the machine's own etcd member only (kubeadm's stacked etcd). All of it comes
from the machine's bootstrap data. Measured on 2 cores: the watch cache off and
API priority and fairness off cut a server's start from ~3.2 to ~2.0
CPU-seconds and its idle load from ~1.4 % to ~0.5 % of a core; memory stays
~250 MB.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from kcp.sim.pki import MachineFiles
from kcp.sim.process import SimProcess

__all__ = [
    "API_SERVER_PORT",
    "AUDIT_LOG_UNROTATED",
    "LIGHT_ARGS",
    "APIServer",
    "ReadyzProbe",
    "readyz",
]

API_SERVER_PORT = 6443

LIGHT_ARGS: tuple[str, ...] = (
    "--watch-cache=false",
    "--enable-priority-and-fairness=false",
    "--profiling=false",
)
"""Flags that keep an idle simulated API server cheap (see the module docstring)."""

AUDIT_LOG_UNROTATED = "--audit-log-maxsize=1048576"
"""kube-apiserver rotates its audit log at 100 MB unless told (lumberjack's default); the
benchmarks count whole logs (at a thousand clusters one rotated mid-run and read 0)."""

_READYZ_TIMEOUT = 2.0


class APIServer:
    """The kube-apiserver process of one machine."""

    def __init__(
        self,
        *,
        address: str,
        etcd_url: str,
        files: MachineFiles,
        process: SimProcess,
        binary: Path,
        service_cidr: str,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.address = address
        self.etcd_url = etcd_url
        self.files = files
        self.process = process
        self.binary = binary
        self.service_cidr = service_cidr
        self.extra_args = tuple(extra_args)
        self._context = ssl.create_default_context(cafile=str(files.ca_crt))
        self._probe = ReadyzProbe(address, API_SERVER_PORT, self._context)
        self._probe_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"https://{self.address}:{API_SERVER_PORT}"

    def start(self) -> None:
        self.process.start(self._argv())

    def ready(self) -> bool:
        """Whether `/readyz` answers 200 (anonymously, verifying the serving certificate)."""
        if not self.process.running or self.process.frozen:
            return False
        # One kept connection: a TLS handshake on both sides for each look every 2 s was a
        # tenth of the simulator's CPU. A real kubelet's probe costs its own machine that.
        with self._probe_lock:
            return self._probe.check()

    def close(self) -> None:
        """Drop the kept readiness connection (the machine is going)."""
        with self._probe_lock:
            self._probe.close()

    def _argv(self) -> list[str]:
        files = self.files
        return [
            str(self.binary),
            f"--advertise-address={self.address}",
            f"--bind-address={self.address}",
            f"--secure-port={API_SERVER_PORT}",
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-cafile={files.etcd_ca_crt}",
            f"--etcd-certfile={files.apiserver_etcd_client_crt}",
            f"--etcd-keyfile={files.apiserver_etcd_client_key}",
            f"--cert-dir={files.dir}",
            f"--tls-cert-file={files.apiserver_crt}",
            f"--tls-private-key-file={files.apiserver_key}",
            f"--client-ca-file={files.ca_crt}",
            f"--service-account-key-file={files.sa_pub}",
            f"--service-account-signing-key-file={files.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--enable-bootstrap-token-auth=true",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            # The `kubernetes` Service's endpoints may not be loopback addresses.
            "--endpoint-reconciler-type=none",
            f"--kubelet-client-certificate={files.apiserver_kubelet_client_crt}",
            f"--kubelet-client-key={files.apiserver_kubelet_client_key}",
            f"--kubelet-certificate-authority={files.ca_crt}",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            "--v=0",
            *self._front_proxy_args(),
            *LIGHT_ARGS,
            *self.extra_args,
        ]

    def _front_proxy_args(self) -> list[str]:
        files = self.files
        if not files.front_proxy:
            return []
        return [
            f"--requestheader-client-ca-file={files.front_proxy_ca_crt}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={files.front_proxy_client_crt}",
            f"--proxy-client-key-file={files.front_proxy_client_key}",
        ]


def readyz(url: str, context: ssl.SSLContext, timeout: float = _READYZ_TIMEOUT) -> bool:
    """GET `<url>/readyz` within `timeout`; any error is "not ready"."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - https on a loopback address we chose
            f"{url}/readyz", context=context, timeout=timeout
        ) as response:
            return bool(response.status == 200)
    except (OSError, ssl.SSLError):
        return False


class ReadyzProbe:
    """`readyz` over one kept-alive connection: a load balancer checks every backend each
    second, and a TLS handshake per check (on both sides) was most of what a check cost.

    A check on a kept connection that fails is tried once more on a new one, so a
    restarted server is not reported down for having dropped the old connection.
    Not thread-safe: one per checking thread.
    """

    def __init__(
        self, host: str, port: int, context: ssl.SSLContext, timeout: float = _READYZ_TIMEOUT
    ) -> None:
        self.host, self.port, self.context, self.timeout = host, port, context, timeout
        self._connection: http.client.HTTPSConnection | None = None
        self.connects = 0
        """Connections opened so far (for tests)."""

    def check(self) -> bool:
        reused = self._connection is not None
        if self._once():
            return True
        return reused and self._once()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _once(self) -> bool:
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=self.timeout
            )
            self.connects += 1
        try:
            self._connection.request("GET", "/readyz")
            response = self._connection.getresponse()
            response.read()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            self.close()
            return False
        if response.will_close:
            self.close()
        return bool(response.status == 200)
