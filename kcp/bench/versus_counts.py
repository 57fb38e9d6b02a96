"""Counting what two controllers do from outside them, the same way for both.

- Requests to the management API server: its audit log (JSON lines), one
  request per `auditID`, grouped by the authenticated user (each controller
  gets a client certificate of its own, whatever client library it uses), and
  per user by verb and resource (`request_kind`), with the answers that were
  not a success apart (a 409 is a write redone).
- Requests to the workload API servers: each machine's API server writes an
  audit log of the workload clients' user (`kubernetes-admin`, the identity of
  the `<cluster>-kubeconfig` Secret that both KCPs and Cluster API's core use);
  they are told apart by the User-Agent's product (`user_agent_product`):
  Cluster API's binaries name themselves, kcp's client does not.
- Port-forwards opened to the workload clusters' Pods: the node agents' logs
  (the simulated kubelet logs one `"Port-forward"` line per connection the
  workload API server makes to it), split by Pod (etcd or kube-apiserver).
- Reconciles and goroutines: the Prometheus text both controllers serve.

Counters read files incrementally (offset per file), so they cost little when
polled every few seconds and a window's count is the difference of two totals.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "AUDIT_POLICY",
    "CLUSTER_API_PRODUCTS",
    "WORKLOAD_AUDIT_POLICY",
    "AuditCounter",
    "PortForwardCounter",
    "WorkloadAuditCounter",
    "audit_requests",
    "contender_requests",
    "metric_value",
    "port_forwards",
    "request_kind",
    "user_agent_product",
    "workload_requests",
]

AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: {users}
- level: Metadata
  verbs: [create, update, patch, delete]
  resources:
  - group: controlplane.cluster.x-k8s.io
    resources: [kubeadmcontrolplanes, kubeadmcontrolplanes/status]
- level: None
"""
"""An audit policy (format with `users`, a JSON list) logging the controllers' users, and
anyone's writes to KubeadmControlPlanes (who else writes them explains a controller's
conflicts); only the controllers' users are counted."""

WORKLOAD_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["kubernetes-admin"]
- level: None
"""
"""The workload API servers' audit policy: the clients of the kubeconfig Secret only."""

CLUSTER_API_PRODUCTS = (
    "cluster-api-manager",
    "kubeadm-bootstrap-manager",
    "kubeadm-control-plane-manager",
)
"""The User-Agent products of Cluster API's core, CABPK and KCP binaries."""

PORT_FORWARD_MARK = '"Port-forward"'


def request_kind(event: dict[str, Any]) -> str:
    """`verb resource[/subresource]` of an audit event (`verb path` for a non-resource URL),
    with ` <code>` appended when the answer was not a success."""
    verb = str(event.get("verb") or "?")
    ref = event.get("objectRef")
    if isinstance(ref, dict) and ref.get("resource"):
        what = str(ref["resource"])
        if ref.get("subresource"):
            what = f"{what}/{ref['subresource']}"
    else:
        what = str(event.get("requestURI") or "?").split("?", 1)[0]
    code = (event.get("responseStatus") or {}).get("code")
    failed = isinstance(code, int) and not 200 <= code < 300
    return f"{verb} {what} {code}" if failed else f"{verb} {what}"


def audit_requests(
    lines: Iterable[str],
    seen: set[str] | None = None,
    by_kind: dict[str, Counter[str]] | None = None,
) -> Counter[str]:
    """Requests per user in audit log `lines` (a watch logs two stages: counted once).

    `seen` carries the audit IDs already counted across calls; lines that are not
    complete JSON events are skipped. `by_kind`, when given, gets each user's
    requests counted by `request_kind` too.
    """
    counts: Counter[str] = Counter()
    for event in _new_audit_events(lines, set() if seen is None else seen):
        user = (event.get("user") or {}).get("username")
        if user:
            counts[str(user)] += 1
            if by_kind is not None:
                by_kind.setdefault(str(user), Counter())[request_kind(event)] += 1
    return counts


def user_agent_product(event: dict[str, Any]) -> str:
    """The first token of an audit event's User-Agent (`kubeadm-control-plane-manager/v1.13.6
    (linux/amd64) ...` -> `kubeadm-control-plane-manager`)."""
    agent = str(event.get("userAgent") or "").strip()
    return agent.split("/", 1)[0].split(" ", 1)[0] or "?"


def workload_requests(
    lines: Iterable[str], seen: set[str], by_kind: dict[str, Counter[str]] | None = None
) -> Counter[str]:
    """Requests in a workload API server's audit log `lines`, by User-Agent product, each
    `auditID` once (`seen` carries them across calls); `by_kind`, when given, gets each
    product's requests counted by `request_kind` too."""
    counts: Counter[str] = Counter()
    for event in _new_audit_events(lines, seen):
        product = user_agent_product(event)
        counts[product] += 1
        if by_kind is not None:
            by_kind.setdefault(product, Counter())[request_kind(event)] += 1
    return counts


def _new_audit_events(lines: Iterable[str], seen: set[str]) -> Iterator[dict[str, Any]]:
    """The complete JSON audit events of `lines` whose `auditID` is not in `seen` (added)."""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        audit_id = str(event.get("auditID") or "")
        if not audit_id or audit_id in seen:
            continue
        seen.add(audit_id)
        yield event


def port_forwards(lines: Iterable[str]) -> Counter[str]:
    """Port-forward connections in kubelet log `lines`, by component (`etcd`, `kube-apiserver`)."""
    counts: Counter[str] = Counter()
    for line in lines:
        if PORT_FORWARD_MARK not in line:
            continue
        _, _, rest = line.partition('pod="')
        pod = rest.split('"', 1)[0].rpartition("/")[2]
        for component in ("etcd", "kube-apiserver"):
            if pod.startswith(f"{component}-"):
                counts[component] += 1
                break
        else:
            counts["other"] += 1
    return counts


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of samples `name` in Prometheus text whose labels include `labels` (0 if none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += float(sample.value)
    return total


class LogRotated(RuntimeError):
    """A counted log was rotated or truncated under the counter: its totals would be short."""


class _TailCounter:
    """Totals over growing files, read from where the last poll stopped (whole lines only)."""

    def __init__(self) -> None:
        self._offsets: dict[Path, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _new_lines(self, path: Path) -> list[str]:
        inode, offset = self._offsets.get(path, (0, 0))
        try:
            with path.open("rb") as file:
                stat = os.fstat(file.fileno())
                if offset and (stat.st_ino != inode or stat.st_size < offset):
                    raise LogRotated(
                        f"{path} was rotated or truncated after {offset} bytes were counted"
                    )
                file.seek(offset)
                data = file.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self._offsets[path] = (stat.st_ino, offset + end)
        return data[:end].decode(errors="replace").splitlines()


class AuditCounter(_TailCounter):
    """Requests per user in one audit log file, totalled since it was created."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._seen: set[str] = set()
        self._totals: Counter[str] = Counter()
        self._by_kind: dict[str, Counter[str]] = {}

    def totals(self) -> dict[str, int]:
        with self._lock:
            self._read()
            return dict(self._totals)

    def of(self, user: str) -> tuple[int, dict[str, int]]:
        """`user`'s requests so far: the total and the count by `request_kind`, read together."""
        with self._lock:
            self._read()
            return self._totals.get(user, 0), dict(self._by_kind.get(user) or {})

    def _read(self) -> None:
        lines = self._new_lines(self.path)
        self._totals.update(audit_requests(lines, self._seen, self._by_kind))


class PortForwardCounter(_TailCounter):
    """Port-forwards per component in the kubelet logs `paths()` names now.

    Call `poll()` often: a machine's log goes with the machine, so what it logged
    since the last poll is lost when it is deleted.
    """

    def __init__(self, paths: Callable[[], Iterable[Path]]) -> None:
        super().__init__()
        self._paths = paths
        self._totals: Counter[str] = Counter()

    def poll(self) -> dict[str, int]:
        with self._lock:
            for path in self._paths():
                self._totals.update(port_forwards(self._new_lines(path)))
            return dict(self._totals)


class WorkloadAuditCounter(_TailCounter):
    """Workload API server requests by User-Agent product, over the audit logs `paths()` names
    now. Poll often: a machine's log goes with the machine."""

    def __init__(self, paths: Callable[[], Iterable[Path]]) -> None:
        super().__init__()
        self._paths = paths
        self._seen: dict[Path, set[str]] = {}
        self._totals: Counter[str] = Counter()
        self._by_kind: dict[str, Counter[str]] = {}

    def poll(self) -> dict[str, int]:
        with self._lock:
            for path in self._paths():
                seen = self._seen.setdefault(path, set())
                self._totals.update(workload_requests(self._new_lines(path), seen, self._by_kind))
            return dict(self._totals)

    def kinds_of(self, program: str) -> dict[str, int]:
        """The requests of `program`'s controller so far by `request_kind` (as of the last
        `poll()`): what it asks the workload clusters for."""
        kinds: Counter[str] = Counter()
        with self._lock:
            for product, counts in self._by_kind.items():
                if _is_contender(product, program):
                    kinds.update(counts)
        return dict(kinds)


def _is_contender(product: str, program: str) -> bool:
    """Cluster API's KCP names itself; kcp is whatever is not one of Cluster API's binaries."""
    if program == "capi":
        return product == "kubeadm-control-plane-manager"
    return product not in CLUSTER_API_PRODUCTS


def contender_requests(by_product: dict[str, int], program: str) -> int:
    """The requests of a contender's controller among `by_product` (see `_is_contender`)."""
    return sum(n for p, n in by_product.items() if _is_contender(p, program))
