"""One simulated workload cluster: its load balancer, its certificate authorities, its machines.

Created when the simulator first sees the cluster's LocalCluster and dropped
when that LocalCluster is deleted. Everything it writes lives under
`<run dir>/<namespace>/<cluster>/`. The load balancer needs no certificate;
the authorities (`pki`, `etcd_tls`) are loaded from the cluster's Secrets once
they exist, for the simulator's own helpers only.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from kcp import certs
from kcp.certs import Usage
from kcp.etcd import EtcdTLS
from kcp.rest import Kube
from kcp.sim.addresses import LoopbackAddresses
from kcp.sim.apiserver import API_SERVER_PORT
from kcp.sim.clients import certificate_client
from kcp.sim.faults import Fault
from kcp.sim.launcher import Launcher
from kcp.sim.loadbalancer import LoadBalancer
from kcp.sim.node_lifecycle import NodeMonitor
from kcp.sim.options import SimOptions
from kcp.sim.pki import ClusterPKI, write_private
from kcp.testing.binaries import Binaries

if TYPE_CHECKING:
    from kcp.sim.machine import SimMachine

__all__ = ["SimCluster", "SimContext"]

SIM_ADMIN_CN = "kcp-sim"


@dataclass
class SimContext:
    """What every cluster and machine of one simulator run shares."""

    options: SimOptions
    launcher: Launcher
    addresses: LoopbackAddresses
    binaries: Binaries
    run_dir: Path
    kubelet_binary: Path
    """The kubelet port-forward helper (`kcp.testing.binaries.ensure_kubelet_portforward`)."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the run ends: long waits give up at once."""


class SimCluster:
    """The simulator's state for one cluster (keyed by the LocalCluster's namespace and name)."""

    def __init__(self, ctx: SimContext, namespace: str, name: str, uid: str) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.dir = ctx.run_dir / namespace / name
        self.machines: dict[str, SimMachine] = {}
        self.join_lock = threading.Lock()
        """Held while a machine starts or joins the etcd cluster: one membership change at once."""
        self.lb: LoadBalancer | None = None
        self.pki: ClusterPKI | None = None
        self.etcd_tls: EtcdTLS | None = None
        self.initialized = False
        """True once an API server of this cluster answered (kubeadm init finished)."""
        self.node_monitor = NodeMonitor(
            grace=ctx.options.node_monitor_grace_period, period=ctx.options.node_monitor_period
        )
        """The cluster's node lifecycle controller, run by whichever live kubelet's turn it is."""
        self.lb_fault: Fault | None = None
        self.lb_fault_from_annotation = False
        self._clients: dict[str, Kube] = {}
        self._lock = threading.Lock()
        self.log = structlog.get_logger("kcp.sim").bind(cluster=f"{namespace}/{name}")

    def __repr__(self) -> str:
        return f"SimCluster({self.namespace}/{self.name}, endpoint={self.endpoint})"

    # -- addresses and load balancer ----------------------------------------------------

    @property
    def endpoint(self) -> tuple[str, int] | None:
        return self.lb.endpoint if self.lb is not None else None

    @property
    def server_url(self) -> str | None:
        endpoint = self.endpoint
        return f"https://{endpoint[0]}:{endpoint[1]}" if endpoint else None

    def start_load_balancer(self, prefer: str | None = None) -> tuple[str, int]:
        """Take an address (`prefer`, e.g. the endpoint already in the spec, if free) and serve."""
        if self.lb is not None:
            return self.lb.endpoint
        address = self.ctx.addresses.allocate([API_SERVER_PORT], prefer=prefer)
        # Each backend is checked against the CA its machine trusts: no cluster Secret needed.
        lb = LoadBalancer(
            address,
            API_SERVER_PORT,
            check_interval=self.ctx.options.health_check_interval,
            name=f"lb-{self.name}",
        )
        try:
            lb.start()
        except BaseException:
            self.ctx.addresses.release(address)
            raise
        self.lb = lb
        self.log.info("load balancer serving", endpoint=f"{address}:{API_SERVER_PORT}")
        return lb.endpoint

    # -- certificates -------------------------------------------------------------------

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    def set_pki(self, pki: ClusterPKI) -> None:
        """Adopt the cluster's authorities and issue the simulator's own client certificates.

        For the simulator's helpers only (`etcd_tls`, `workload()`, the
        dashboard): machines boot from their bootstrap data, never from these.
        """
        if self.pki is not None and self.pki.fingerprints == pki.fingerprints:
            return
        algorithm = self.ctx.options.key_algorithm
        client: tuple[Usage, ...] = ("client",)
        etcd_client = certs.issue_certificate(
            pki.etcd_ca,
            common_name=f"{SIM_ADMIN_CN}-etcd-client",
            usages=client,
            algorithm=algorithm,
        )
        admin = certs.issue_certificate(
            pki.ca,
            common_name=SIM_ADMIN_CN,
            organizations=("system:masters",),
            usages=client,
            algorithm=algorithm,
        )
        write_private(self.ca_file, pki.ca.cert_pem)
        write_private(self.pki_dir / "sim-admin.crt", admin.cert_pem)
        write_private(self.pki_dir / "sim-admin.key", admin.key_pem)
        with self._lock:
            self.etcd_tls = EtcdTLS(
                ca_pem=pki.etcd_ca.cert_pem,
                cert_pem=etcd_client.cert_pem,
                key_pem=etcd_client.key_pem,
                ca_source=f"Secret {self.namespace}/{self.name}-etcd",
            )
            self.pki = pki
            self._clients.clear()

    def admin_kubeconfig(self) -> bytes:
        """A kubeconfig for the endpoint, with a `system:masters` certificate the CA signed."""
        if self.pki is None or self.server_url is None:
            raise RuntimeError(f"cluster {self.namespace}/{self.name} is not provisioned yet")
        return certs.build_kubeconfig(
            cluster_name=self.name,
            server=self.server_url,
            ca_pem=self.pki.ca.cert_pem,
            client_cert_pem=(self.pki_dir / "sim-admin.crt").read_bytes(),
            client_key_pem=(self.pki_dir / "sim-admin.key").read_bytes(),
        )

    # -- workload access -----------------------------------------------------------------

    def workload(self, server_url: str | None = None) -> Kube:
        """A client of the workload API (through the endpoint unless `server_url` is given)."""
        url = server_url or self.server_url
        if url is None or self.pki is None:
            raise RuntimeError(f"cluster {self.namespace}/{self.name} has no endpoint yet")
        with self._lock:
            kube = self._clients.get(url)
            if kube is None:
                kube = certificate_client(
                    url,
                    ca_file=self.ca_file,
                    cert_file=self.pki_dir / "sim-admin.crt",
                    key_file=self.pki_dir / "sim-admin.key",
                    timeout=self.ctx.options.workload_timeout,
                )
                self._clients[url] = kube
            return kube

    # -- etcd -------------------------------------------------------------------------

    def etcd_endpoints(self, exclude: SimMachine | None = None) -> list[str]:
        """Client endpoints of the members whose processes run now."""
        return [
            m.etcd.endpoint
            for m in list(self.machines.values())
            if m is not exclude and m.etcd is not None and m.etcd.process.running
        ]

    # -- teardown -----------------------------------------------------------------------

    def stop_load_balancer(self) -> None:
        if self.lb is not None:
            self.lb.stop()
            self.ctx.addresses.release(self.lb.host)
            self.lb = None

    def teardown(self) -> None:
        """Stop every machine and the load balancer, and remove the cluster's directory."""
        for machine in list(self.machines.values()):
            machine.teardown()
        self.machines.clear()
        self.stop_load_balancer()
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for kube in clients:
            with contextlib.suppress(Exception):
                kube.api_client.close()
        shutil.rmtree(self.dir, ignore_errors=True)
