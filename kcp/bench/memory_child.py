"""One measured controller process for `kcp bench memory`; run by it, one per mode.

`python -m kcp.bench.memory_child --kubeconfig K --empty-namespace E --namespace N
--cache metadata|full --list streaming|paginated --out FILE`

A small controller — a manager, a Secret informer, a controller whose workers
read each Secret from the cache — first syncs against a namespace without
Secrets (imports, TLS, threads, the first requests: the process's own
baseline), then a fresh one syncs against the namespace holding the Secrets.
`VmHWM` after each phase gives the peak; the difference is what the Secrets
cost this process. Each mode runs in a fresh process so one mode's heap never
pollutes another's.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kcp.bench import procstat
from kcp.rest import Resource

__all__ = ["main"]

SECRETS = Resource("", "v1", "Secret", "secrets")


def _phase(
    api_client: Any, namespace: str, *, metadata_only: bool, streaming: bool, timeout: float
) -> tuple[dict[str, Any], procstat.ProcessSample]:
    """Run the controller until every Secret of `namespace` is cached and reconciled once."""
    from kcp.runtime import (
        Informer,
        Manager,
        ManagerOptions,
        ObjectKey,
        Result,
        enqueue_self,
        new_registry,
    )

    informer = Informer(
        api_client,
        SECRETS,
        namespace=namespace,
        metadata_only=metadata_only,
        streaming_list=streaming,
    )
    reconciled: set[ObjectKey] = set()
    lock = threading.Lock()
    sizes = {"bytes_seen": 0}

    def reconcile(key: ObjectKey) -> Result:
        obj = informer.get(key.namespace, key.name)
        if obj is not None:
            data = obj.get("data") or {}
            with lock:
                reconciled.add(key)
                sizes["bytes_seen"] += sum(len(v) for v in data.values())
        return Result()

    manager = Manager(
        ManagerOptions(health_addr="0", metrics_bind_addr="0", concurrency=2),
        registry=new_registry(process_collectors=False),
    )
    manager.add_informer(informer)
    controller = manager.new_controller("secrets", reconcile)
    informer.add_handler(enqueue_self().bind(controller.enqueue))
    started = time.monotonic()
    cpu_started = procstat.cpu_seconds()
    manager.start()
    try:
        if not informer.wait_for_sync(timeout):
            raise TimeoutError(f"Secret informer of {namespace} not synced in {timeout:.0f}s")
        synced = time.monotonic() - started
        expected = len(informer.keys())
        deadline = time.monotonic() + timeout
        while True:
            with lock:
                done = len(reconciled)
            if done >= expected:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{expected} Secrets reconciled in {timeout:.0f}s")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        cpu = procstat.cpu_seconds() - cpu_started
        gc.collect()
        after = procstat.sample()  # the cache is still alive here: what a controller keeps
        stats = {
            "objects": expected,
            "list_mode": informer.initial_list_mode,
            "accept_header": informer.last_accept_headers.get("watch" if streaming else "list", ""),
            "sync_seconds": round(synced, 3),
            "ready_seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu, 3),
            "data_bytes_in_cache": sizes["bytes_seen"],
        }
    finally:
        manager.stop(timeout=5)
    return stats, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kcp.bench.memory_child")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--empty-namespace", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--cache", choices=("metadata", "full"), required=True)
    parser.add_argument("--list", choices=("streaming", "paginated"), required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from kubernetes import config

    from kcp.bench.environment import quiet_logging

    quiet_logging()
    loader: Any = config.new_client_from_config
    api_client = loader(config_file=args.kubeconfig)
    metadata_only = args.cache == "metadata"
    streaming = args.list == "streaming"

    empty_stats, empty = _phase(
        api_client,
        args.empty_namespace,
        metadata_only=metadata_only,
        streaming=streaming,
        timeout=args.timeout,
    )
    gc.collect()
    baseline = procstat.sample()
    full_stats, loaded = _phase(
        api_client,
        args.namespace,
        metadata_only=metadata_only,
        streaming=streaming,
        timeout=args.timeout,
    )
    peak = procstat.sample()
    result = {
        "cache": args.cache,
        "list": args.list,
        "baseline_peak_rss_bytes": baseline.peak_rss,
        "baseline_rss_bytes": baseline.rss,
        "peak_rss_bytes": peak.peak_rss,
        "rss_with_cache_bytes": loaded.rss,
        "rss_empty_cache_bytes": empty.rss,
        "threads": loaded.threads,
        "empty": empty_stats,
        "loaded": full_stats,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
