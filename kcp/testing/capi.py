"""Cluster API's own controllers, run as local processes beside kcp.

Core (Cluster, Machine, MachineHealthCheck, ...) and the kubeadm bootstrap
provider (CABPK) are what a real management cluster runs next to a
KubeadmControlPlane provider; Cluster API's own KubeadmControlPlane controller
is the baseline of the side-by-side benchmark. Each runs from the pinned
module's binary (`kcp.testing.binaries.ensure_cluster_api`) against a
kubeconfig, with leader election off, health and metrics on free loopback
ports and its webhook server given a certificate made at start (no webhook
configuration points at it: the API server never calls it). Logs go to
`<work dir>/<name>.log`. Every process is stopped by `stop()`, at exit, or
with the process that started it.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kcp import certs
from kcp.testing import binaries
from kcp.testing.processes import ManagedProcess, free_port, wait_until

__all__ = [
    "CORE",
    "KUBEADM_BOOTSTRAP",
    "KUBEADM_CONTROL_PLANE",
    "CapiOptions",
    "ClusterAPIProcesses",
]

HOST = "127.0.0.1"
CORE = "capi-core"
KUBEADM_BOOTSTRAP = "capi-kubeadm-bootstrap"
KUBEADM_CONTROL_PLANE = "capi-kubeadm-control-plane"


@dataclass
class CapiOptions:
    """Which of Cluster API's controllers to run, and how."""

    controllers: tuple[str, ...] = (CORE, KUBEADM_BOOTSTRAP)
    """Names from CORE, KUBEADM_BOOTSTRAP, KUBEADM_CONTROL_PLANE."""
    namespace: str | None = None
    """Watch one namespace only (`--namespace`); None: all."""
    work_dir: Path | None = None
    """Logs and webhook certificates (None: a new temp dir, removed on stop)."""
    verbosity: int = 2
    start_timeout: float = 90.0
    extra_args: dict[str, list[str]] = field(default_factory=dict)
    """Extra command-line arguments per controller name."""


@dataclass
class _Controller:
    name: str
    process: ManagedProcess
    health_port: int
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://{HOST}:{self.health_port}/readyz", timeout=2) as r:
            return int(r.status) == 200


class ClusterAPIProcesses:
    """Start with `start()` or a `with` block; `stop()` ends every process."""

    def __init__(self, kubeconfig: Path, options: CapiOptions | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.options = options or CapiOptions()
        self._own_work_dir = self.options.work_dir is None
        self.work_dir = self.options.work_dir or Path(tempfile.mkdtemp(prefix="kcp-capi-"))
        self.capi = binaries.ensure_cluster_api()
        self.controllers: dict[str, _Controller] = {}

    def __enter__(self) -> ClusterAPIProcesses:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def version(self) -> str:
        return self.capi.version

    def binary(self, name: str) -> Path:
        return {
            CORE: self.capi.core,
            KUBEADM_BOOTSTRAP: self.capi.kubeadm_bootstrap,
            KUBEADM_CONTROL_PLANE: self.capi.kubeadm_control_plane,
        }[name]

    def start(self) -> None:
        """Start every configured controller and wait until each reports ready."""
        try:
            cert_dir = self._webhook_certificate()
            for name in self.options.controllers:
                self.controllers[name] = self._launch(name, cert_dir)
            for controller in self.controllers.values():
                wait_until(
                    controller.ready,
                    timeout=self.options.start_timeout,
                    what=f"{controller.name} to report ready",
                    interval=0.25,
                    process=controller.process,
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for controller in reversed(list(self.controllers.values())):
            controller.process.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def log_paths(self) -> dict[str, Path]:
        return {name: c.process.log_path for name, c in self.controllers.items()}

    def pids(self) -> dict[str, int]:
        return {
            name: c.process.pid for name, c in self.controllers.items() if c.process.pid is not None
        }

    def running(self, name: str) -> bool:
        controller = self.controllers.get(name)
        return controller is not None and controller.process.running

    def restart(self, name: str) -> None:
        """Stop and start one controller again (a crash-and-restart, as tests need it)."""
        controller = self.controllers[name]
        controller.process.stop()
        self.controllers[name] = self._launch(name, self.work_dir / "webhook-certs")
        wait_until(
            self.controllers[name].ready,
            timeout=self.options.start_timeout,
            what=f"{name} to report ready",
            interval=0.25,
            process=self.controllers[name].process,
        )

    def stop_controller(self, name: str) -> None:
        """Stop one controller for good (a takeover stops Cluster API's KCP, say)."""
        controller = self.controllers.pop(name, None)
        if controller is not None:
            controller.process.stop()

    def metrics_url(self, name: str) -> str:
        return self.controllers[name].metrics_url

    def _launch(self, name: str, cert_dir: Path) -> _Controller:
        health_port, metrics_port, webhook_port = free_port(HOST), free_port(HOST), free_port(HOST)
        argv = [
            str(self.binary(name)),
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--health-addr={HOST}:{health_port}",
            f"--diagnostics-address={HOST}:{metrics_port}",
            "--insecure-diagnostics",
            f"--webhook-port={webhook_port}",
            f"--webhook-cert-dir={cert_dir}",
            f"--v={self.options.verbosity}",
        ]
        if self.options.namespace:
            argv.append(f"--namespace={self.options.namespace}")
        argv += self.options.extra_args.get(name, [])
        process = ManagedProcess(name, argv, log_path=self.work_dir / f"{name}.log")
        process.start()
        return _Controller(name, process, health_port, metrics_port)

    def _webhook_certificate(self) -> Path:
        """A serving certificate for the webhook servers, which refuse to start without one."""
        cert_dir = self.work_dir / "webhook-certs"
        cert_dir.mkdir(parents=True, exist_ok=True)
        ca = certs.new_certificate_authority("kcp-test-webhook-ca", algorithm="ecdsa-p256")
        usages: tuple[certs.Usage, ...] = ("server",)
        serving = certs.issue_certificate(
            ca,
            common_name="webhook",
            usages=usages,
            dns_names=("localhost",),
            ip_addresses=(HOST,),
            algorithm="ecdsa-p256",
        )
        (cert_dir / "tls.crt").write_bytes(serving.cert_pem)
        key_path = cert_dir / "tls.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(serving.key_pem)
        return cert_dir
