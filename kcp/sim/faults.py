"""Faults a test can inject into a simulated machine or load balancer, and their annotations.

A fault is set from Python (`Simulator.inject`) or by annotating the object, so
that another process (a test driving `kcp sim`, a user with kubectl) can break
things too:

    kubectl annotate localmachine m1 fault.local.infrastructure.cluster.x-k8s.io/etcd=killed
    kubectl annotate localmachine m1 fault.local.infrastructure.cluster.x-k8s.io/etcd-

Removing the annotation (or `Simulator.restore`) brings the component back.
While a component is faulted the simulator's kubelet does not restart it; while
the kubelet itself is faulted nothing is restarted and the Node goes unreachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "ANNOTATION_PREFIX",
    "Component",
    "Fault",
    "annotation_key",
    "faults_from_annotations",
]

ANNOTATION_PREFIX = "fault.local.infrastructure.cluster.x-k8s.io/"


class Component(StrEnum):
    """What a fault targets: a machine's process, or a cluster's load balancer."""

    ETCD = "etcd"
    API_SERVER = "apiserver"
    KUBELET = "kubelet"
    """The node agent: its API (port-forwards) and its work (restarts of crashed processes,
    Pod status, the Node's Lease and status). Without it the Node goes unreachable."""
    LOAD_BALANCER = "load-balancer"


class Fault(StrEnum):
    """How the component misbehaves."""

    STOPPED = "stopped"
    """Stopped gracefully (SIGTERM): connections are refused."""
    KILLED = "killed"
    """Killed (SIGKILL), as in a crash: connections are refused."""
    BLACKHOLED = "blackholed"
    """Its port accepts TCP connections and never answers (and open connections go silent)."""
    FROZEN = "frozen"
    """The process is suspended (SIGSTOP): the kernel still accepts connections, nobody answers."""


MACHINE_COMPONENTS = (Component.ETCD, Component.API_SERVER, Component.KUBELET)


def annotation_key(component: Component) -> str:
    """The annotation that sets a fault on `component`, e.g. `...x-k8s.io/etcd`."""
    return f"{ANNOTATION_PREFIX}{component.value}"


def faults_from_annotations(
    annotations: Mapping[str, str], components: tuple[Component, ...]
) -> tuple[dict[Component, Fault], list[str]]:
    """The faults the annotations ask for, and a message per annotation that makes no sense."""
    wanted: dict[Component, Fault] = {}
    problems: list[str] = []
    for component in components:
        value = annotations.get(annotation_key(component))
        if value is None:
            continue
        try:
            wanted[component] = Fault(value.strip().lower())
        except ValueError:
            choices = ", ".join(f.value for f in Fault)
            problems.append(
                f"annotation {annotation_key(component)}={value!r} is not a fault; use one of "
                f"{choices} (remove the annotation to restore the {component.value})"
            )
    return wanted, problems
