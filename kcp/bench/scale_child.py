"""A stand-in controller for `kcp bench scale` and `profile`: `kcp.runtime` + the tracker.

`python -m kcp.bench.scale_child --kubeconfig K --namespace NS [...]`

Until `kcp run` can reconcile the benchmark's cheap clusters, this is the
controller measured (reported as `"controller": "runtime+tracker"`): a manager
with informers for KubeadmControlPlanes, Clusters and (metadata-only) cluster
Secrets, the product's tracker, and a reconciler doing what the real one does
first on every reconcile — take the tracker's etcd access for the cluster and
check its etcd (status of each member, member list, alarms) — then write
`status.observedGeneration` and the `EtcdClusterHealthy` condition when they
changed. Flags, threads and caches are the product's; it runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["main"]


def _condition(healthy: bool, message: str, generation: int) -> dict[str, Any]:
    from kcp.api import conditions as c

    return {
        "type": c.ETCD_CLUSTER_HEALTHY,
        "status": c.TRUE if healthy else c.FALSE,
        "reason": c.HEALTHY_REASON if healthy else c.NOT_HEALTHY_REASON,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def build(args: argparse.Namespace) -> Any:
    """The manager, with its informers, tracker and controller wired (not started)."""
    from kubernetes import config

    from kcp.api import conditions as c
    from kcp.api import groups
    from kcp.api.labels import CLUSTER_NAME_LABEL
    from kcp.bench.fleet import ENDPOINTS_ANNOTATION
    from kcp.rest import Kube
    from kcp.runtime import (
        Informer,
        Manager,
        ManagerOptions,
        ObjectKey,
        Result,
        enqueue_self,
        map_to,
    )
    from kcp.runtime.store import split_key
    from kcp.tracker import (
        ClusterKey,
        ClusterSecretError,
        NotConnected,
        Tracker,
        TrackerOptions,
    )

    loader: Any = config.new_client_from_config
    api_client = loader(config_file=args.kubeconfig)
    options = ManagerOptions(
        namespace=args.namespace,
        concurrency=args.concurrency,
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        health_addr="0",
        metrics_bind_addr=args.metrics_bind_addr,
    )
    manager = Manager(options, api_client=api_client)
    kcps = Informer(api_client, groups.KUBEADM_CONTROL_PLANE, namespace=args.namespace)
    clusters = Informer(api_client, groups.CLUSTER, namespace=args.namespace)
    secrets = Informer(
        api_client,
        groups.SECRET,
        namespace=args.namespace,
        label_selector=CLUSTER_NAME_LABEL,
        metadata_only=True,
    )
    tracker = Tracker.for_api_client(
        api_client,
        TrackerOptions(
            capacity=args.capacity,
            key_algorithm=args.key_algorithm,
            probe_interval=args.probe_interval or None,
            **({"etcd_channels": args.etcd_channels} if args.etcd_channels else {}),
        ),
    )
    kube = Kube(api_client, field_manager="kcp-bench-controller")

    def reconcile(key: ObjectKey) -> Result:
        kcp = kcps.get(key.namespace, key.name)
        if kcp is None:
            return Result()
        metadata = kcp["metadata"]
        cluster = clusters.get(
            key.namespace, (metadata.get("labels") or {}).get(CLUSTER_NAME_LABEL, "")
        )
        if cluster is None:
            return Result(requeue_after=5.0)
        endpoints = [
            e
            for e in (metadata.get("annotations") or {}).get(ENDPOINTS_ANNOTATION, "").split(",")
            if e
        ]
        generation = int(metadata.get("generation") or 0)
        try:
            access = tracker.etcd_access(ClusterKey.from_object(cluster), endpoints)
        except ClusterSecretError as error:
            healthy, message, retry = False, str(error), error.retry_after
        except NotConnected as error:
            return Result(requeue_after=error.retry_after)
        else:
            status = access.cluster_status()
            healthy, message = status.healthy, "; ".join(status.errors)
            retry = args.requeue_after
        current = kcp.get("status") or {}
        previous = next(
            (x for x in current.get("conditions") or () if x.get("type") == c.ETCD_CLUSTER_HEALTHY),
            None,
        )
        wanted = _condition(healthy, message, generation)
        unchanged = (
            current.get("observedGeneration") == generation
            and previous is not None
            and previous.get("status") == wanted["status"]
            and previous.get("message") == wanted["message"]
        )
        if not unchanged:
            if previous is not None and previous.get("status") == wanted["status"]:
                wanted["lastTransitionTime"] = previous["lastTransitionTime"]
            kube.merge_patch(
                groups.KUBEADM_CONTROL_PLANE,
                key.namespace,
                key.name,
                {"status": {"observedGeneration": generation, "conditions": [wanted]}},
                subresource="status",
            )
        return Result(requeue_after=retry or None)

    def cluster_to_control_plane(obj: dict[str, Any]) -> list[tuple[str, str]]:
        ref = (obj.get("spec") or {}).get("controlPlaneRef") or {}
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        return [(namespace, ref["name"])] if ref.get("name") else []

    def all_keys() -> list[ObjectKey]:
        stored = kcps.keys()
        return [ObjectKey(*split_key(key)) for key in stored]

    controller = manager.new_controller("kubeadmcontrolplane", reconcile, keys=all_keys)
    kcps.add_handler(enqueue_self().bind(controller.enqueue))
    clusters.add_handler(map_to(cluster_to_control_plane).bind(controller.enqueue))
    clusters.add_handler(tracker.cluster_event_handler())
    secrets.add_handler(tracker.secret_event_handler())
    for informer in (kcps, clusters, secrets):
        manager.add_informer(informer)
    _export_pool_stats(tracker, manager.registry)
    return manager, tracker


def _export_pool_stats(tracker: Any, registry: Any) -> None:
    """`kcp_bench_etcd_channels_*`: the tracker's etcd channel pool counters, for the bench."""
    from prometheus_client import Gauge

    def reader(name: str) -> Any:
        return lambda: float(getattr(tracker.etcd_pool.stats(), name))

    for field_name in ("size", "max_size", "opened", "reused", "evicted"):
        gauge = Gauge(
            f"kcp_bench_etcd_channels_{field_name}",
            f"etcd channel pool: {field_name.replace('_', ' ')}",
            registry=registry,
        )
        gauge.set_function(reader(field_name))


def main(argv: list[str] | None = None) -> int:
    from kcp.runtime.options import ManagerOptions
    from kcp.tracker import TrackerOptions

    manager, tracker = ManagerOptions(), TrackerOptions()  # the defaults kcp run ships
    parser = argparse.ArgumentParser(prog="python -m kcp.bench.scale_child")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--concurrency", type=int, default=manager.concurrency)
    parser.add_argument("--kube-api-qps", type=float, default=manager.kube_api_qps)
    parser.add_argument("--kube-api-burst", type=int, default=manager.kube_api_burst)
    parser.add_argument("--metrics-bind-addr", default="0")
    parser.add_argument("--capacity", type=int, default=tracker.capacity)
    parser.add_argument("--key-algorithm", default=tracker.key_algorithm)
    parser.add_argument(
        "--etcd-channels", type=int, default=None, help="etcd channel pool size (tracker default)"
    )
    parser.add_argument(
        "--probe-interval", type=float, default=tracker.probe_interval, help="0: no probes"
    )
    parser.add_argument(
        "--requeue-after", type=float, default=0.0, help="re-check a healthy cluster after (0: no)"
    )
    args = parser.parse_args(argv)

    from kcp.bench.environment import quiet_logging

    quiet_logging()
    running, tracked = build(args)
    try:
        return int(running.run_until_signal())
    finally:
        tracked.close()


if __name__ == "__main__":
    sys.exit(main())
