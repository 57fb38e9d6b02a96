"""The one-command demo: a management cluster, the simulator, (soon) the controller, the samples.

`run_dev()` starts a local management control plane (or uses `--kubeconfig`),
the simulator's controllers against it and, when given, the controller from
`controller_factory`; applies `config/samples/`; prints where the kubeconfig
is; and redraws a status table per cluster until Ctrl-C. Whatever happens,
everything it started is stopped before it returns. `kcp dev` and `make run`
call this with the KubeadmControlPlane controller's factory once it exists.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from kcp.api import groups
from kcp.rest import ApiError, Kube
from kcp.runtime import configure_logging
from kcp.sim.clients import management_client
from kcp.sim.dashboard import render_dashboard
from kcp.sim.objects import create_if_absent
from kcp.sim.options import SimOptions
from kcp.sim.simulator import Simulator

__all__ = [
    "SAMPLES_DIR",
    "ControllerFactory",
    "DevEnvironment",
    "DevOptions",
    "Running",
    "apply_manifests",
    "run_dev",
]

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "config" / "samples"


class Running(Protocol):
    """Something `run_dev` started on the caller's behalf and must stop at the end."""

    def stop(self) -> Any: ...


@dataclass
class DevEnvironment:
    """What a controller factory gets: the management cluster, and where to say things."""

    api_client: Any
    kubeconfig: Path
    work_dir: Path
    simulator: Simulator
    notes: list[str] = field(default_factory=list)
    """Lines printed under the kubeconfig (e.g. "metrics: http://127.0.0.1:8080/metrics")."""


ControllerFactory = Callable[[DevEnvironment], Running]


@dataclass
class DevOptions:
    """How `run_dev` runs; defaults are `make run`'s."""

    kubeconfig: Path | None = None
    """An existing management cluster (e.g. from `kcp envtest`); None starts one."""
    samples_dir: Path | None = SAMPLES_DIR
    """Manifests applied at start (None: none)."""
    namespace: str = "default"
    """Where the samples go."""
    work_dir: Path | None = None
    """Where the management cluster and the simulator keep their files (None: temp dirs)."""
    refresh: float = 2.0
    """Seconds between redraws of the status table."""
    watch_namespace: str | None = None
    """Simulate only this namespace's clusters (None: all), e.g. on a shared cluster."""
    duration: float | None = None
    """Stop by itself after this many seconds (None: until Ctrl-C); for tests."""
    log_to_file: bool = True
    """Send the process's logs to `<work dir>/sim.log` (keeps the table readable)."""
    handle_signals: bool = True
    """Turn SIGTERM/SIGHUP into an orderly stop (from the main thread of a foreground program)."""
    out: TextIO = field(default_factory=lambda: sys.stdout)
    report_available: bool = False
    """Say once (and keep saying in the table's header) when every KubeadmControlPlane is
    Available; `make run`'s readiness signal."""


def apply_manifests(kube: Kube, directory: Path, namespace: str) -> list[str]:
    """Create every object in `directory`'s YAML files (existing ones are left alone)."""
    created: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or "kind" not in document:
                continue
            group = str(document.get("apiVersion", "")).rpartition("/")[0]
            resource = groups.find(group, str(document["kind"]))
            if resource is None:
                raise ValueError(
                    f"{path.name}: unknown kind {document['apiVersion']} {document['kind']}"
                )
            target_ns = namespace if resource.namespaced else None
            if target_ns is not None:
                document.setdefault("metadata", {})["namespace"] = target_ns
            if create_if_absent(kube, resource, target_ns, document) is not None:
                created.append(f"{document['kind']}/{document['metadata']['name']}")
    return created


def run_dev(
    controller_factory: ControllerFactory | None = None, options: DevOptions | None = None
) -> int:
    """Run the demo until Ctrl-C (or `options.duration`); returns the exit code."""
    options = options or DevOptions()
    out = options.out
    with contextlib.ExitStack() as stack:
        api_client, kubeconfig, work_dir = stack.enter_context(_management_cluster(options))
        log_path = work_dir / "sim.log"
        if options.log_to_file:
            log_file = stack.enter_context(log_path.open("a"))
            configure_logging(json=False, stream=log_file)
        simulator = Simulator(
            api_client,
            SimOptions(
                work_dir=work_dir / "sim" if options.work_dir else None,
                namespace=options.watch_namespace,
                kubeconfig=kubeconfig,
            ),
        )
        stack.callback(_say, out, "stopping the simulator's and Cluster API's processes ...")
        stack.callback(simulator.stop)
        _say(
            out,
            "starting the simulator and Cluster API's core and kubeadm bootstrap controllers ...",
        )
        simulator.start()
        if simulator.cluster_api is not None:
            pids = simulator.cluster_api.pids()
            for name, log in simulator.cluster_api.log_paths().items():
                _say(
                    out,
                    f"Cluster API {simulator.cluster_api.version} {name}: pid {pids.get(name)}, "
                    f"log {log}",
                )
        env = DevEnvironment(api_client, kubeconfig, work_dir, simulator)
        if controller_factory is not None:
            controller = controller_factory(env)
            stack.callback(controller.stop)
        kube = management_client(api_client)
        if options.samples_dir is not None:
            with contextlib.suppress(ApiError):
                kube.create(groups.NAMESPACE, None, {"metadata": {"name": options.namespace}})
            created = apply_manifests(kube, options.samples_dir, options.namespace)
            _say(out, f"applied {len(created)} objects from {options.samples_dir}")
        _say(
            out,
            f"KUBECONFIG={kubeconfig}\n"
            f"  kubectl --kubeconfig {kubeconfig} get kubeadmcontrolplanes -A\n"
            f"  kubectl --kubeconfig {kubeconfig} scale kubeadmcontrolplane <name> --replicas 3\n"
            f"  kcp status --kubeconfig {kubeconfig} -A\n"
            f"simulator work dir {simulator.work_dir}"
            + (f"; logs in {log_path}" if options.log_to_file else ""),
        )
        for note in env.notes:
            _say(out, note)
        if controller_factory is None:
            _say(out, "no controller runs: machines appear only when something creates them")
        _say(out, "Ctrl-C stops everything.")
        return _show(api_client, simulator, options)
    return 0  # pragma: no cover - the with block always returns


def _show(api_client: Any, simulator: Simulator, options: DevOptions) -> int:
    out = options.out
    deadline = None if options.duration is None else time.monotonic() + options.duration
    tty = out.isatty()
    started = time.monotonic()
    headline = ""
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                table = render_dashboard(api_client, simulator, options.watch_namespace)
                if options.report_available and not headline:
                    count = _all_available(api_client, options.watch_namespace)
                    if count:
                        headline = (
                            f"all sample clusters Available ({count} clusters, "
                            f"{time.monotonic() - started:.0f}s after start)"
                        )
                        _say(out, headline)
            except Exception as error:  # the table must never end the demo
                table = f"(status unavailable: {error})\n"
            stamp = time.strftime("%H:%M:%S")
            header = f"-- {stamp} -- {headline}".rstrip()
            out.write(("\033[H\033[2J" if tty else "\n") + f"{header}\n{table}")
            out.flush()
            time.sleep(options.refresh)
    except KeyboardInterrupt:
        _say(out, "\ninterrupted")
    return 0


def _all_available(api_client: Any, namespace: str | None) -> int:
    """How many KubeadmControlPlanes there are if all are Available with every replica
    ready, else 0."""
    from kcp.api import conditions

    kube = management_client(api_client)
    items = kube.list(groups.KUBEADM_CONTROL_PLANE, namespace)

    def settled(item: dict[str, Any]) -> bool:
        desired = item.get("spec", {}).get("replicas", 1)
        ready = item.get("status", {}).get("readyReplicas", 0)
        return conditions.is_true(item, conditions.AVAILABLE) and ready == desired

    return len(items) if items and all(settled(item) for item in items) else 0


@contextlib.contextmanager
def _management_cluster(options: DevOptions) -> Iterator[tuple[Any, Path, Path]]:
    """(api client, kubeconfig path, work dir) of the given or a freshly started cluster."""
    import tempfile

    if options.handle_signals and threading.current_thread() is threading.main_thread():
        from kcp.testing.processes import install_signal_handlers

        install_signal_handlers()
    if options.kubeconfig is not None:
        import kubernetes.config

        config: Any = kubernetes.config
        api_client = config.new_client_from_config(config_file=str(options.kubeconfig))
        work_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="kcp-dev-"))
        try:
            yield api_client, options.kubeconfig, work_dir
        finally:
            api_client.close()
            if options.work_dir is None:
                shutil.rmtree(work_dir, ignore_errors=True)
        return
    from kcp.testing.controlplane import ControlPlaneOptions, LocalControlPlane

    _say(options.out, "starting a local management cluster (kube-apiserver + etcd) ...")
    plane = LocalControlPlane(ControlPlaneOptions(work_dir=options.work_dir))
    try:
        plane.start()
        api_client = plane.api_client()
        try:
            yield api_client, plane.kubeconfig_path, plane.work_dir
        finally:
            api_client.close()
    finally:
        _say(options.out, "stopping the management cluster ...")
        plane.stop()


def _say(out: TextIO, message: str) -> None:
    out.write(message + "\n")
    out.flush()
