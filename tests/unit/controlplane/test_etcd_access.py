"""How the reconciler reaches etcd (`--etcd-access`) and tells the user when it cannot."""

from __future__ import annotations

import dataclasses

from tests.unit.controlplane.builders import cluster, kcp
from tests.unit.controlplane.fakes import FakeKube, FakeTracker, etcd_status
from tests.unit.controlplane.test_reconciler import (
    KEY,
    _events,
    _reconciler,
    _running_control_plane,
    kube,
    tracker,
)

__all__ = ["kube", "tracker"]  # the fixtures, shared with test_reconciler


def test_a_refused_port_forward_is_an_event_naming_the_pod(
    kube: FakeKube, tracker: FakeTracker
) -> None:
    kube.put(kcp(replicas=3))
    kube.put(cluster())
    _running_control_plane(kube, tracker, ["a", "b", "c"])
    refusal = (
        "etcd status at kube-system/etcd-c:2379 failed: port-forward to Pod kube-system/etcd-c "
        "port 2379 via https://cp:6443 was refused (HTTP 403: forbidden); check RBAC"
    )
    tracker.etcd = dataclasses.replace(
        etcd_status(["a", "b", "c"], unhealthy=["c"]), refusals=(refusal,)
    )
    _reconciler(kube, tracker).reconcile(KEY)
    assert ("Warning", "EtcdPortForwardRefused", refusal) in _events(kube)
    assert tracker.endpoints_seen[-1][-1] == "kube-system/etcd-c:2379"
