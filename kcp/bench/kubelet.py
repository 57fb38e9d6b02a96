"""The kubelet of the benchmark fleet's one Node, so that port-forwards work on the cheap fleet.

The management API server stands in for every benchmark cluster's workload API
server and holds what a kubelet reports: one Node named after the shared etcd's
member and its static Pods (`kcp.bench.workload`). A port-forward to
`kube-system/etcd-<node>` is proxied by that API server, as by any, to the
kubelet at the Node's InternalIP and kubelet port. `SharedKubelet` is that
kubelet: the simulator's `kubelet-portforward` helper (the kubelet's own
streaming library), on the shared etcd's own loopback address at 10250, with a
serving certificate from the management CA, accepting only the API server's
kubelet client certificate. It forwards `etcd-<node>:2379` to the shared etcd and
`kube-apiserver-<node>:6443` to the management API server (which stands in for
each machine's API server too). Nothing else is reachable through it.
"""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any

from kcp.testing.processes import ManagedProcess, wait_until

__all__ = ["SharedKubelet"]

_READY_TIMEOUT = 30.0


class SharedKubelet:
    """`kubelet-portforward` for the shared etcd's Node; a context manager (start, stop)."""

    def __init__(
        self,
        *,
        pki_dir: Path,
        work_dir: Path,
        node_name: str,
        address: str,
        etcd_client: str,
        apiserver: str,
    ) -> None:
        self.pki_dir = pki_dir
        self.work_dir = work_dir
        self.node_name = node_name
        self.address = address
        self.forwards = {
            f"etcd-{node_name}:2379": etcd_client,
            f"kube-apiserver-{node_name}:6443": apiserver,
        }
        """Pod port -> the `host:port` serving it."""
        self._process: ManagedProcess | None = None

    @classmethod
    def for_environment(cls, env: Any, etcd: Any) -> SharedKubelet:
        """The kubelet of `etcd`'s (a `SharedEtcd` on the standard port) Node in `env`."""
        member = etcd.cluster.members[0]
        return cls(
            pki_dir=Path(env.plane.work_dir) / "pki",
            work_dir=Path(env.work_dir) / f"kubelet-{member.name}",
            node_name=member.name,
            address=member.host,
            etcd_client=f"{member.host}:{member.client_port}",
            apiserver=f"127.0.0.1:{env.plane.apiserver_port}",
        )

    @property
    def url(self) -> str:
        from kcp.sim.kubelet_server import KUBELET_PORT

        return f"https://{self.address}:{KUBELET_PORT}"

    def __enter__(self) -> SharedKubelet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from kcp import certs
        from kcp.sim.kubelet_server import kubelet_argv, write_kubelet_files
        from kcp.testing.binaries import ensure_kubelet_portforward
        from kcp.testing.controlplane import KUBELET_CLIENT_CN

        ca_crt = self.pki_dir / "ca.crt"
        ca = certs.key_pair_from_secret_data(
            {"tls.crt": ca_crt.read_bytes(), "tls.key": (self.pki_dir / "ca.key").read_bytes()},
            secret_name="the management cluster's CA",
        )
        files = write_kubelet_files(
            ca, self.work_dir / "pki", ca_crt, node_name=self.node_name, address=self.address
        )
        argv = kubelet_argv(
            ensure_kubelet_portforward(progress=False),
            address=self.address,
            files=files,
            forwards=self.forwards,
            allowed_user=KUBELET_CLIENT_CN,
        )
        self._process = ManagedProcess(
            "bench-kubelet", argv, log_path=self.work_dir / "kubelet.log"
        )
        self._process.start()
        try:
            wait_until(
                self._ready,
                timeout=_READY_TIMEOUT,
                what=f"the benchmark kubelet at {self.url}",
                interval=0.1,
                process=self._process,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _ready(self) -> bool:
        """`/healthz` over the TLS the API server uses (its kubelet client certificate)."""
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(
            str(self.pki_dir / "apiserver-kubelet-client.crt"),
            str(self.pki_dir / "apiserver-kubelet-client.key"),
        )
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", context=context, timeout=2) as r:  # noqa: S310
                return bool(r.status == 200)
        except (OSError, ssl.SSLError):
            return False
