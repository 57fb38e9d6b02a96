"""Seeing reconciles from outside: when each control plane's `observedGeneration` caught up.

The benchmark never instruments the controller it measures. It watches the
KubeadmControlPlanes itself and notes the moment each (name, generation) is
first reported as observed; a change's latency is that moment minus the time
the change was sent. It so covers the whole loop — the change reaching the
controller's watch, the queue, the reconcile, the status write, and that write
reaching our watch — the same way for any controller.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ETCD_CLUSTER_HEALTHY", "GenerationObserver", "latency_ms", "percentile"]

ETCD_CLUSTER_HEALTHY = "EtcdClusterHealthy"


def percentile(values: Iterable[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank) of `values`; 0.0 when empty."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


class GenerationObserver:
    """Watches the control planes of one namespace; thread-safe."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kcp.api import groups
        from kcp.runtime import Informer

        self.informer = Informer(api_client, groups.KUBEADM_CONTROL_PLANE, namespace=namespace)
        self._seen: dict[str, list[tuple[int, float]]] = {}
        """name -> (observedGeneration, first time seen), in the order seen."""
        self._generation: dict[str, int] = {}
        self._seen_healthy: dict[str, list[tuple[int, float]]] = {}
        """Like `_seen`, counting only states with `EtcdClusterHealthy` True (its etcd was
        checked through the tracker: key generated, certificate issued, etcd answered)."""
        self._changed = threading.Condition()
        self.informer.add_handler(self._handle)

    def start(self, timeout: float = 60.0) -> None:
        self.informer.start()
        if not self.informer.wait_for_sync(timeout):
            raise TimeoutError("the benchmark's own KubeadmControlPlane watch did not sync")

    def stop(self) -> None:
        self.informer.stop()

    def _handle(self, event_type: str, obj: dict[str, Any], old: Any) -> None:
        now = time.monotonic()
        if event_type == "DELETED":
            return
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name") or "")
        status = obj.get("status") or {}
        observed = int(status.get("observedGeneration") or 0)
        healthy = any(
            c.get("type") == ETCD_CLUSTER_HEALTHY and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        with self._changed:
            if healthy and observed:
                healthy_seen = self._seen_healthy.setdefault(name, [])
                if not healthy_seen or healthy_seen[-1][0] < observed:
                    healthy_seen.append((observed, now))
            self._generation[name] = int(metadata.get("generation") or 0)
            seen = self._seen.setdefault(name, [])
            if observed and (not seen or seen[-1][0] < observed):
                seen.append((observed, now))
            self._changed.notify_all()

    def generations(self, names: Iterable[str]) -> dict[str, int]:
        """The current `metadata.generation` of each name, as last seen."""
        with self._changed:
            return {n: self._generation.get(n, 0) for n in names}

    def observed(self, name: str) -> int:
        """The newest observedGeneration seen for `name` (0: never reconciled)."""
        with self._changed:
            seen = self._seen.get(name)
            return seen[-1][0] if seen else 0

    def _first_at_least(self, name: str, generation: int, *, healthy: bool = False) -> float | None:
        for observed, at in (self._seen_healthy if healthy else self._seen).get(name, ()):
            if observed >= generation:
                return at
        return None

    def wait_observed(
        self,
        targets: dict[str, int],
        timeout: float,
        on_progress: Callable[[int], None] | None = None,
        *,
        healthy: bool = False,
    ) -> dict[str, float]:
        """Wait until each name's observedGeneration reached its target generation (and,
        with `healthy`, its etcd was reported healthy); returns, per name, the monotonic
        time it first did."""
        deadline = time.monotonic() + timeout
        found: dict[str, float] = {}
        with self._changed:
            while True:
                for name, generation in targets.items():
                    if name not in found:
                        at = self._first_at_least(name, generation, healthy=healthy)
                        if at is not None:
                            found[name] = at
                if on_progress is not None:
                    on_progress(len(found))
                if len(found) == len(targets):
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pending = [n for n in targets if n not in found]
                    raise TimeoutError(
                        f"{len(pending)} of {len(targets)} control planes not reconciled within "
                        f"{timeout:.0f}s (e.g. {', '.join(pending[:3])})"
                    )
                self._changed.wait(min(remaining, 0.5))


def latency_ms(seen: dict[str, float], sent: dict[str, float]) -> dict[str, float]:
    """p50, p99 and max milliseconds from each key's send to its sighting, and how many."""
    values = [1000 * (seen[n] - sent[n]) for n in seen]
    return {
        "p50": round(percentile(values, 0.50), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values, default=0.0), 1),
        "samples": len(values),
    }
