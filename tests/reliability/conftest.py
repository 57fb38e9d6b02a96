"""The reliability suite's session: one fleet of clusters, one controller, one summary.

The fleet (`fleet.Fleet`) is shared by every module: the simulator's
namespace holds the clusters that run real etcd members and API servers
(`victim`, scaled and broken by the fault tests and given a wrong etcd CA by
the bad-input tests; `bystander`, which must keep reconciling), and one `kcp run`
child process reconciles them as a ServiceAccount bound to `config/rbac/`.
The clusters start provisioning when the package's first test starts, so the
modules that do not need them yet (bad input before any Machine exists)
overlap with it; everything stops when the package's last test is done.

At the end of the session the summary (faults injected, kills survived, bad
inputs tried, leaks found) is printed by tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kcp.api import groups
from kcp.rest import ApiError, Kube
from kcp.testing.controlplane import LocalControlPlane
from tests.reliability import harness
from tests.reliability.fleet import Fleet
from tests.reliability.rbac import service_account_kubeconfig
from tests.reliability.summary import SUMMARY, Summary

FLEET_TUNING: dict[str, Any] = {
    # Requeue delays of a few seconds instead of Cluster API's 5/10/20/60 s, a health probe
    # every 2 s instead of 10 s, a never-connected cluster reported after 3 failed checks
    # (1, 2, 4 s apart) instead of 5: the same code paths, more of them per minute.
    "reconciler": {
        "waiting_requeue": 2.0,
        "not_initialized_requeue": 2.0,
        "unhealthy_requeue": 3.0,
        "health_requeue": 10.0,
        "error_backoff_initial": 1.0,
        "unreachable_event_after": 3,
    },
    "tracker": {"probe_interval": 2.0, "connecting_backoff": 1.0},
}
CLUSTERS = ("victim", "bystander")


@pytest.fixture(scope="session")
def summary() -> Summary:
    return SUMMARY


def _create_namespace(kube: Kube, name: str) -> None:
    kube.create(groups.NAMESPACE, None, {"metadata": {"name": name}})


def _release(kube: Kube, namespace: str) -> None:
    """Drop the finalizers the stopped controllers can no longer remove, then the namespace."""
    for resource in (groups.KUBEADM_CONTROL_PLANE, groups.MACHINE, groups.CLUSTER):
        with contextlib.suppress(ApiError, OSError):
            for obj in kube.list(resource, namespace):
                if obj["metadata"].get("finalizers"):
                    with contextlib.suppress(ApiError, OSError):
                        kube.merge_patch(
                            resource,
                            namespace,
                            obj["metadata"]["name"],
                            {"metadata": {"finalizers": None}},
                        )
    with contextlib.suppress(ApiError, OSError):
        kube.delete(groups.NAMESPACE, None, namespace)


@pytest.fixture(scope="package")
def fleet(
    control_plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    from kcp.sim import SimOptions, Simulator

    suffix = uuid.uuid4().hex[:8]
    watch = f"rel-{suffix}"
    namespaces = {
        "fleet": f"rel-{suffix}-fleet",
        "bad": f"rel-{suffix}-bad",
        "system": f"rel-{suffix}-system",
    }
    kube = Kube(control_plane.api_client(), field_manager="reliability-test")
    for name in namespaces.values():
        _create_namespace(kube, name)
    work = tmp_path_factory.mktemp("reliability")
    kubeconfig, cleanup_rbac = service_account_kubeconfig(
        control_plane, namespaces["system"], suffix, work / "kcp-sa.kubeconfig"
    )
    sim = Simulator(
        control_plane.api_client(),
        SimOptions(namespace=namespaces["fleet"], kubeconfig=control_plane.kubeconfig_path),
    )
    kcp = harness.KcpProcess(
        "fleet",
        kubeconfig=kubeconfig,
        work_dir=work / "fleet",
        extra_args=[f"--watch-filter={watch}"],
        tuning=FLEET_TUNING,
    )
    try:
        sim.start()
        kcp.start()
        built = Fleet(
            watch=watch,
            namespace=namespaces["fleet"],
            bad_namespace=namespaces["bad"],
            kube=kube,
            sim=sim,
            kcp=kcp,
            plane=control_plane,
            work_dir=work,
            system_namespace=namespaces["system"],
        )
        for cluster in CLUSTERS:
            built.add_cluster(cluster)
        yield built
    finally:
        kcp.stop(timeout=20)
        sim.stop()
        for name in namespaces.values():
            _release(kube, name)
        cleanup_rbac()
