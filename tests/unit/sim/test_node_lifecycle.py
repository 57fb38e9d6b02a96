"""Node heartbeats: a Node whose kubelet stops renewing its Lease goes unreachable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kcp.sim.node_lifecycle import (
    UNREACHABLE_TAINT,
    NodeMonitor,
    lease_object,
    node_is_stale,
    unknown_conditions,
)
from kcp.sim.workload import node_status

NOW = datetime(2026, 12, 7, 1, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=40)


def _node(heartbeat: datetime, *, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "uid": "u1"},
        "spec": {"taints": taints or []},
        "status": node_status("n1", "127.0.0.2", "v1.34.4", heartbeat),
    }


def test_a_renewed_lease_keeps_the_node_fresh() -> None:
    node = _node(NOW - timedelta(minutes=10))
    lease = lease_object("n1", "u1", NOW - timedelta(seconds=5))
    assert not node_is_stale(node, lease, NOW, GRACE)
    assert node_is_stale(node, lease_object("n1", "u1", NOW - timedelta(seconds=41)), NOW, GRACE)
    assert node_is_stale(node, None, NOW, GRACE)
    assert not node_is_stale(_node(NOW - timedelta(seconds=3)), None, NOW, GRACE)


def test_an_unreachable_node_reports_unknown_as_the_node_controller_writes_it() -> None:
    conditions = {x["type"]: x for x in unknown_conditions(_node(NOW - GRACE * 2), NOW)}
    for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[kind]["status"] == "Unknown"
        assert conditions[kind]["reason"] == "NodeStatusUnknown"
        assert conditions[kind]["message"] == "Kubelet stopped posting node status."


class _Kube:
    def __init__(self, node: dict[str, Any], lease: dict[str, Any] | None) -> None:
        self.node, self.lease = node, lease
        self.patches: list[tuple[str | None, dict[str, Any]]] = []

    def list(self, resource: Any, namespace: str | None = None) -> list[dict[str, Any]]:
        if resource.kind == "Lease":
            return [self.lease] if self.lease else []
        return [self.node]

    def merge_patch(
        self,
        resource: Any,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        self.patches.append((subresource, patch))
        return {}


def test_the_monitor_marks_and_taints_a_silent_node_and_untaints_it_once_back() -> None:
    silent = _Kube(_node(NOW - GRACE * 2), lease_object("n1", "u1", NOW - GRACE * 2))
    monitor = NodeMonitor(grace=40.0, period=5.0)
    assert monitor.due() and not monitor.due()
    assert monitor.check(silent, NOW) == ["n1"]  # type: ignore[arg-type]
    (status_subresource, status), (_, spec) = silent.patches
    assert status_subresource == "status"
    ready = next(x for x in status["status"]["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "Unknown"
    assert {(t["key"], t["effect"]) for t in spec["spec"]["taints"]} == {
        (UNREACHABLE_TAINT, "NoSchedule"),
        (UNREACHABLE_TAINT, "NoExecute"),
    }
    tainted = [{"key": UNREACHABLE_TAINT, "effect": "NoExecute"}]
    back = _Kube(_node(NOW, taints=tainted), lease_object("n1", "u1", NOW))
    assert monitor.check(back, NOW) == []  # type: ignore[arg-type]
    assert back.patches == [(None, {"spec": {"taints": None}})]
