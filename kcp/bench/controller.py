"""The controller under measurement, as a child process of the benchmark.

Two choices, one switch (`--controller`):

- `runtime+tracker`: `kcp.bench.scale_child`, the runtime's manager and
  informers with the product's tracker and an etcd-health reconciler;
- `kcp-run`: the real `kcp run` — used once it exists and the fleet creates
  what its reconciler needs for a steady cluster (Machines with status and
  nodeRef, Nodes and control-plane Pods in a workload API server). Until then
  choosing it fails with a message saying so, and `auto` picks
  `runtime+tracker`.

Both get the same flags (namespace, concurrency, API QPS/burst) so figures of
one compare with the other's.
"""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kcp.bench.environment import BenchEnvironment, child_env
from kcp.testing.processes import ManagedProcess

__all__ = [
    "CONTROLLERS",
    "ControllerFlags",
    "RunningController",
    "kcp_run_available",
    "resolve_controller",
    "start_controller",
]

CONTROLLERS = ("auto", "runtime+tracker", "kcp-run")

FLEET_SUPPORTS_KCP_RUN = True
"""Whether `kcp.bench.fleet` creates what `kcp run` needs for a steady-state cluster.
Flip it (and extend the fleet) once the reconciler lands."""


@dataclass(frozen=True)
class ControllerFlags:
    """The flags both controllers get; written into the results."""

    concurrency: int = 10
    kube_api_qps: float = 200.0
    kube_api_burst: int = 300
    probe_interval: float = 10.0
    key_algorithm: str = "rsa-2048"
    etcd_access: str = "port-forward"
    """`kcp run --etcd-access`: through port-forwards via the workload API server (the
    default, as Cluster API) or `direct` to the member's address."""


def kcp_run_available() -> bool:
    """True when `kcp run` exists in this checkout."""
    from kcp import cli

    return "run" in cli.COMMANDS


def resolve_controller(choice: str) -> str:
    """The controller to start for `choice` ("auto" picks the real one when usable)."""
    if choice not in CONTROLLERS:
        raise ValueError(f"--controller must be one of {', '.join(CONTROLLERS)}")
    usable = kcp_run_available() and FLEET_SUPPORTS_KCP_RUN
    if choice == "auto":
        return "kcp-run" if usable else "runtime+tracker"
    if choice == "kcp-run" and not usable:
        missing = (
            "`kcp run` does not exist in this checkout yet"
            if not kcp_run_available()
            else "the benchmark fleet does not create Machines, Nodes and Pods for it yet "
            "(kcp.bench.fleet, FLEET_SUPPORTS_KCP_RUN)"
        )
        raise RuntimeError(f"--controller kcp-run is not usable: {missing}")
    return choice


@dataclass
class RunningController:
    """A started controller process and where its Prometheus metrics are served."""

    process: ManagedProcess
    metrics_url: str

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()

    def metrics(self) -> dict[str, float]:
        """Every sample summed over its labels, by sample name ({} if not answering)."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:  # noqa: S310
                text = response.read().decode()
        except OSError:
            return {}
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
        return totals


def _argv(
    controller: str,
    env: BenchEnvironment,
    namespace: str,
    flags: ControllerFlags,
    *,
    capacity: int,
    metrics_addr: str,
) -> list[str]:
    common = [
        f"--kubeconfig={env.kubeconfig}",
        f"--namespace={namespace}",
        f"--kubeadmcontrolplane-concurrency={flags.concurrency}",
        f"--kube-api-qps={flags.kube_api_qps}",
        f"--kube-api-burst={flags.kube_api_burst}",
        f"--metrics-bind-addr={metrics_addr}",
    ]
    if controller == "kcp-run":
        return [
            sys.executable,
            "-m",
            "kcp",
            "run",
            *common,
            "--health-addr=0",
            f"--etcd-access={flags.etcd_access}",
        ]
    return [
        sys.executable,
        "-m",
        "kcp.bench.scale_child",
        *(a.replace("--kubeadmcontrolplane-concurrency", "--concurrency") for a in common),
        f"--capacity={capacity}",
        f"--probe-interval={flags.probe_interval}",
        f"--key-algorithm={flags.key_algorithm}",
    ]


def start_controller(
    controller: str,
    env: BenchEnvironment,
    namespace: str,
    flags: ControllerFlags,
    *,
    capacity: int,
    log_path: Path,
) -> RunningController:
    """Start the controller process; the caller stops it (`stop()` sends SIGTERM)."""
    from kcp.testing.processes import free_port

    metrics_addr = f"127.0.0.1:{free_port()}"
    process = ManagedProcess(
        f"controller-{controller}",
        _argv(controller, env, namespace, flags, capacity=capacity, metrics_addr=metrics_addr),
        log_path=log_path,
        env=child_env(),
    )
    process.start()
    return RunningController(process, f"http://{metrics_addr}/metrics")
