"""The simulated kubelet's reports: sent once, sent again when the API server lost them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kcp.sim.workload import ContainerState, Kubelet, node_status


class _Workload:
    """Nodes, Pods and Leases by name; PATCHes merge into `status` or `spec` shallowly."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.patched: list[str] = []

    def get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource.kind, name))

    def list(self, resource: Any, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        return [o for (kind, _name), o in self.objects.items() if kind == resource.kind]

    def create(self, resource: Any, namespace: str | None, body: dict[str, Any]) -> Any:
        obj = {**body, "metadata": {**body["metadata"], "uid": "u"}}
        self.objects.setdefault((resource.kind, body["metadata"]["name"]), obj)
        return obj

    def merge_patch(
        self, resource: Any, namespace: str | None, name: str, patch: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self.patched.append(f"{resource.kind}/{name}")
        obj = self.objects.setdefault((resource.kind, name), {"metadata": {"name": name}})
        for key, value in patch.items():
            obj[key] = {**(obj.get(key) or {}), **value} if isinstance(value, dict) else value
        return obj


def test_a_report_overwritten_on_the_server_is_sent_again() -> None:
    workload = _Workload()
    kubelet = Kubelet(
        workload,  # type: ignore[arg-type]
        node_name="n1",
        address="127.0.0.2",
        provider_id="local:///ns/n1",
        version="v1.34.4",
    )
    ready = ContainerState(True, True, 0, datetime.now(UTC))
    states = {
        c: ready for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
    }
    kubelet.register(states)
    assert any(k == ("Lease", "n1") for k in workload.objects)
    workload.patched.clear()
    kubelet.sync(states)
    assert workload.patched == []  # nothing changed: nothing sent
    # A late request with an older state lands after the newer one.
    etcd = workload.objects[("Pod", "etcd-n1")]
    etcd["status"]["containerStatuses"][0]["ready"] = False
    kubelet.heartbeat()
    workload.patched.clear()
    kubelet.sync(states)
    assert workload.patched == ["Pod/etcd-n1"]
    assert etcd["status"]["containerStatuses"][0]["ready"] is True


def test_a_node_marked_unreachable_is_posted_ready_again() -> None:
    workload = _Workload()
    kubelet = Kubelet(
        workload,  # type: ignore[arg-type]
        node_name="n1",
        address="127.0.0.2",
        provider_id="local:///ns/n1",
        version="v1.34.4",
    )
    kubelet.register({})
    node = workload.objects[("Node", "n1")]
    status = node_status("n1", "127.0.0.2", "v1.34.4", datetime.now(UTC))
    for condition in status["conditions"]:
        condition["status"] = "Unknown"
    node["status"] = status
    kubelet.heartbeat()
    ready = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "True"
