"""What `scale` and `profile` share: settings of one controller against the fleet, and the fleet.

`FleetRunSettings` holds the size of the fleet and the controller to start with
its flags; `watched_fleet` sets up the fleet on one shared etcd with an observer
of its reconciles, and takes it all down again.

Kept apart from `kcp.bench.fleet`, which the measured controller (`scale_child`)
imports too: what this module imports stays out of the process measured.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kcp.bench.controller import ControllerFlags
from kcp.bench.environment import BenchEnvironment
from kcp.bench.fleet import Fleet, SharedEtcd, steady_workload
from kcp.bench.kubelet import SharedKubelet
from kcp.bench.observer import GenerationObserver

__all__ = ["FleetRunSettings", "describe_fleet", "watched_fleet"]


@dataclass(frozen=True)
class FleetRunSettings:
    """What a benchmark of one controller against the fleet starts it with.

    Each benchmark's settings extend these and give `clusters` its own default.
    """

    clusters: int
    controller: str = "auto"
    """One of `kcp.bench.controller.CONTROLLERS`."""
    flags: ControllerFlags = field(default_factory=ControllerFlags)

    @staticmethod
    def changes_from_args(args: argparse.Namespace) -> dict[str, Any]:
        """`--controller`, and `--clusters` when given, as changes for `dataclasses.replace`."""
        changes: dict[str, Any] = {"controller": getattr(args, "controller", "auto")}
        if getattr(args, "clusters", None):
            changes["clusters"] = args.clusters
        return changes


@contextlib.contextmanager
def watched_fleet(
    env: BenchEnvironment, namespace: str, controller: str
) -> Iterator[tuple[Fleet, GenerationObserver]]:
    """An empty fleet in a new `namespace` on a new `SharedEtcd`, and a running observer of it.

    For `controller` "kcp-run" the etcd listens on the standard port, the fleet
    has the steady workload side and its Node a kubelet (`SharedKubelet`), so
    `kcp run` reaches etcd through port-forwards as on real infrastructure (or
    directly with `--etcd-access=direct`). On the way out the observer stops,
    the fleet's clusters are deleted, the kubelet and the etcd stop.
    """
    real = controller == "kcp-run"
    with SharedEtcd(standard_port=real) as etcd, contextlib.ExitStack() as stack:
        if real:
            stack.enter_context(SharedKubelet.for_environment(env, etcd))
        fleet = Fleet(
            env.api_client(),
            namespace,
            etcd.ca,
            etcd.endpoints,
            workload=steady_workload(env, etcd) if real else None,
        )
        fleet.create_namespace()
        observer = GenerationObserver(env.api_client(), namespace)
        observer.start()
        try:
            yield fleet, observer
        finally:
            observer.stop()
            fleet.delete_all()


def describe_fleet(controller: str) -> list[str]:
    """How the fleet is cheaper than real clusters, for every table measured on it.

    Its figures hold for this fleet only: a reader must know that every cluster
    shares one etcd and (with `kcp run`) one API server, and what a "resync" is.
    """
    if controller == "kcp-run":
        workload = (
            "the management API server stands in for every workload API server "
            "(one Node, its four static Pods; one Machine per cluster)"
        )
        copied = "; kcp run copies it onto each Machine in place"
    else:
        workload = "no workload API server (the controller checks etcd only)"
        copied = ""
    return [
        f"  fleet: every cluster shares one etcd (one member, one CA); {workload}",
        "  resync: a metadata bump of every KubeadmControlPlane at once (a new annotation in "
        f"spec.machineTemplate.metadata: a new generation each to reconcile and report, "
        f"no rollout{copied})",
    ]
