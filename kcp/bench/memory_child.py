"""One measured controller process for `kcp bench memory`; run by it, one per mode.

`python -m kcp.bench.memory_child --kubeconfig K --empty-namespace E --namespace N
--cache metadata|full --list streaming|paginated --out FILE`

A small controller — a manager, a Secret informer, a controller whose workers
read each Secret from the cache — first syncs against a namespace without
Secrets (imports, TLS, threads, the first requests: the warm-up, the
process's own baseline), then a fresh one syncs against the namespace holding
the Secrets. Between the two the peak (`VmHWM`) is reset to the current RSS, so
the measured phase's peak is its own and not the warm-up's; the peak over the
RSS it started from is what the Secrets cost this process. Where the kernel
refuses the reset, the output says so (`peak_reset`: false) and the peak is the
whole process's. Each mode runs in a fresh process so one mode's heap never
pollutes another's.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kcp.bench import procstat
from kcp.rest import Resource

__all__ = ["PhasePeaks", "main", "run_phases"]

SECRETS = Resource("", "v1", "Secret", "secrets")

W = TypeVar("W")
M = TypeVar("M")


@dataclass(frozen=True)
class PhasePeaks:
    """Peaks around the measured phase, in bytes."""

    warmup_peak_rss: int
    """`VmHWM` at the end of the warm-up (before the reset)."""
    peak_reset: bool
    """Whether the peak was reset after the warm-up; if not, `peak_rss` may be the warm-up's."""
    start: procstat.ProcessSample
    """Right after the reset: the measured phase starts from `start.rss`, and its peak
    from `start.peak_rss` (that RSS after a reset, the warm-up's peak without one)."""
    peak_rss: int
    """`VmHWM` at the end of the measured phase."""


def run_phases(warm_up: Callable[[], W], measured: Callable[[], M]) -> tuple[W, M, PhasePeaks]:
    """Run `warm_up`, reset the peak, run `measured`: the measured phase's peak is its own."""
    warm = warm_up()
    gc.collect()
    warmup_peak = procstat.sample().peak_rss
    reset = procstat.reset_peak()
    start = procstat.sample()
    result = measured()
    peak = procstat.sample().peak_rss
    return warm, result, PhasePeaks(warmup_peak, reset, start, peak)


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

    def phase(namespace: str) -> tuple[dict[str, Any], procstat.ProcessSample]:
        return _phase(
            api_client,
            namespace,
            metadata_only=metadata_only,
            streaming=streaming,
            timeout=args.timeout,
        )

    (empty_stats, empty), (full_stats, loaded), peaks = run_phases(
        lambda: phase(args.empty_namespace), lambda: phase(args.namespace)
    )
    result = {
        "cache": args.cache,
        "list": args.list,
        "peak_reset": peaks.peak_reset,
        "warmup_peak_rss_bytes": peaks.warmup_peak_rss,
        "baseline_peak_rss_bytes": peaks.start.peak_rss,
        "baseline_rss_bytes": peaks.start.rss,
        "peak_rss_bytes": peaks.peak_rss,
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
