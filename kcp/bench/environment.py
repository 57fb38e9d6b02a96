"""What every benchmark runs against: a real local management cluster, and quiet logs.

`management_cluster()` starts a real kube-apiserver + etcd on loopback (the
`WatchList` gate on, so streaming lists are possible) and stops it afterwards;
`kcp bench all` starts one and hands it to every scenario. Child processes
(the controllers being measured) get the kubeconfig path and their own log file
in `work_dir`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kcp.bench.progress import Progress

__all__ = [
    "BenchEnvironment",
    "child_env",
    "info_log",
    "machine_info",
    "management_cluster",
    "quiet_logging",
    "run_child",
]


@dataclass
class BenchEnvironment:
    """A running management cluster and a directory for child logs and results."""

    plane: Any
    """`kcp.testing.LocalControlPlane`."""
    work_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return Path(self.plane.kubeconfig_path)

    def api_client(self) -> Any:
        return self.plane.api_client()

    def unique(self, prefix: str) -> str:
        """A fresh name, so scenarios sharing one cluster never see each other's objects."""
        return f"{prefix}-{uuid.uuid4().hex[:6]}"


def quiet_logging() -> None:
    """Benchmark processes log only warnings, as JSON on stderr (stdout is for results)."""
    from kcp.runtime.logging import configure_logging

    configure_logging(level="warning", json=True, stream=sys.stderr)
    logging.getLogger("kcp").setLevel(logging.WARNING)


@contextlib.contextmanager
def info_log(logger: str, path: Path) -> Iterator[None]:
    """While open, `logger`'s info lines also go to `path` (stderr still gets warnings only).

    The benchmarks log warnings only; where a run keeps its logs, the simulator's
    info lines (machine provisioned, etcd member added, torn down) are what say
    where a scenario's seconds went.
    """
    log = logging.getLogger(logger)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in (to_file, to_stderr):
        if root.handlers:
            handler.setFormatter(root.handlers[0].formatter)
        log.addHandler(handler)
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.setLevel(level)
        log.propagate = propagate
        for handler in (to_file, to_stderr):
            log.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def management_cluster(
    progress: Progress,
    *,
    keep_logs: Path | None = None,
    apiserver_args: Sequence[str] = (),
) -> Iterator[BenchEnvironment]:
    """Start a local kube-apiserver + etcd (WatchList on) for the benchmarks, then stop it.

    With `keep_logs`, every log file written under the work directory (the measured
    controllers', the API server's) and every `snapshots/*.json` is copied there before
    the directory is removed.
    """
    from kcp.testing.controlplane import ControlPlaneOptions, LocalControlPlane

    work_dir = Path(tempfile.mkdtemp(prefix="kcp-bench-"))
    progress.step("starting the management cluster (kube-apiserver + etcd)")
    plane = LocalControlPlane(
        ControlPlaneOptions(
            watch_list=True,
            work_dir=work_dir / "plane",
            extra_apiserver_args=list(apiserver_args),
        )
    )
    plane.start()
    try:
        yield BenchEnvironment(plane=plane, work_dir=work_dir)
    finally:
        progress.step("stopping the management cluster")
        plane.stop()
        if keep_logs is not None:
            _copy_logs(work_dir, keep_logs)
        shutil.rmtree(work_dir, ignore_errors=True)


def _copy_logs(work_dir: Path, destination: Path) -> None:
    for log in [*work_dir.rglob("*.log"), *work_dir.rglob("snapshots/*.json")]:
        target = destination / log.relative_to(work_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(log, target)


def child_env() -> dict[str, str]:
    """The environment of a measured child: this one, with the repository importable."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_child(
    module: str, argv: Sequence[str], *, log_path: Path, timeout: float
) -> dict[str, Any]:
    """Run `python -m module argv... --out FILE` to completion and return the JSON it wrote."""
    out = log_path.with_suffix(".json")
    command = [sys.executable, "-m", module, *argv, "--out", str(out)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            timeout=timeout,
            check=False,
        )
    if completed.returncode != 0 or not out.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{module} exited with {completed.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: CPUs, load, Python, kernel, time."""
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(load[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
