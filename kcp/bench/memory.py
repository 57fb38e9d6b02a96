"""`kcp bench memory`: a controller's peak RSS with big and many Secrets, by caching mode.

The management cluster gets 100 Secrets of 1 MiB each (the largest a Secret
may be) and, separately, 10,000 small ones. For each caching mode a fresh child
process (`kcp.bench.memory_child`) runs a Secret-watching controller, first
against an empty namespace (the warm-up: its baseline), then against the
namespace holding the Secrets, with the peak (`VmHWM`) reset in between so the
second phase's peak is its own. Reported: that peak and its growth over the RSS
the phase started from, whether the reset worked (`peak_reset`; where the kernel
refuses it the peak includes the warm-up's, and the summary says so), and the
RSS still held once synced, for

- `metadata_streaming`: metadata-only caching (PartialObjectMetadata) filled
  by a streaming list (`sendInitialEvents`) — what kcp does;
- `full_paginated`: whole objects filled by a plain paginated list — the
  baseline, as a controller caching Secrets the usual way;
- (full runs also) `metadata_paginated` and `full_streaming`, to tell the
  effect of the cache contents from that of the list method.

Acceptance, checked on the 1 MiB set: metadata-only growth under 10 MiB, while
full-object growth exceeds the Secrets' size.
"""

from __future__ import annotations

import argparse
import base64
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from kcp.bench import table
from kcp.bench.environment import BenchEnvironment, run_child
from kcp.bench.procstat import MIB
from kcp.bench.progress import Progress
from kcp.bench.runner import Scenario, add_common_arguments, cluster_scenario, run_scenarios

__all__ = [
    "MemorySettings",
    "add_arguments",
    "measure",
    "run",
    "scenario",
    "settings_from_args",
    "summary",
]

MODES: dict[str, tuple[str, str]] = {
    "metadata_streaming": ("metadata", "streaming"),
    "full_paginated": ("full", "paginated"),
    "metadata_paginated": ("metadata", "paginated"),
    "full_streaming": ("full", "streaming"),
}
"""Mode name -> (cache contents, how the initial list is fetched)."""

PRODUCT_MODE = "metadata_streaming"
BASELINE_MODE = "full_paginated"
METADATA_GROWTH_LIMIT_MIB = 10.0
"""Acceptance: metadata-only peak RSS growth with 100 MiB of Secrets stays under this."""
GROWTH_RESOLUTION_MIB = 4 / 1024
"""One page: a growth below it is below what VmHWM can show (used as the ratio's floor)."""

_SECRET_SIZE_LIMIT = 1024 * 1024
"""The API server refuses Secrets whose data (keys + values) exceed 1 MiB."""


@dataclass(frozen=True)
class MemorySettings:
    large_count: int = 100
    large_bytes: int = _SECRET_SIZE_LIMIT
    small_count: int = 10_000
    small_bytes: int = 1024
    modes: tuple[str, ...] = tuple(MODES)
    child_timeout: float = 300.0

    @classmethod
    def quick(cls) -> MemorySettings:
        """CI-sized: the full 1 MiB set (it is the acceptance), fewer small Secrets, two modes."""
        return cls(small_count=2000, modes=(PRODUCT_MODE, BASELINE_MODE))


def _secret(name: str, key: str, value_b64: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"kcp.bench/set": name.rsplit("-", 1)[0]}},
        "type": "Opaque",
        "data": {key: value_b64},
    }


def populate(
    env: BenchEnvironment,
    namespace: str,
    *,
    prefix: str,
    count: int,
    data_bytes: int,
    progress: Progress,
    workers: int = 4,
) -> None:
    """Create `count` Secrets of `data_bytes` (key + value, as the API server counts)."""
    from kubernetes import client

    key = "blob"
    value = base64.b64encode(os.urandom(max(1, data_bytes - len(key)))).decode()
    core: Any = client.CoreV1Api(env.api_client())
    progress.step(f"memory: creating {count} Secrets of {data_bytes} bytes", count)

    def create(index: int) -> None:
        body = _secret(f"{prefix}-{index:05d}", key, value)
        core.create_namespaced_secret(namespace, body, _preload_content=False)
        progress.advance()

    with ThreadPoolExecutor(workers, thread_name_prefix="bench-populate") as pool:
        for future in [pool.submit(create, i) for i in range(count)]:
            future.result()


def _create_namespace(env: BenchEnvironment, name: str) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(env.api_client())
    core.create_namespace({"metadata": {"name": name}})


def _clean_up(env: BenchEnvironment, namespaces: Sequence[str]) -> None:
    """Delete the Secrets (no namespace controller runs here, so a namespace delete would not)."""
    from kubernetes import client

    core: Any = client.CoreV1Api(env.api_client())
    for namespace in namespaces:
        core.delete_collection_namespaced_secret(namespace, _preload_content=False)
        core.delete_namespace(namespace, _preload_content=False)


def _measure_mode(
    env: BenchEnvironment, mode: str, empty_ns: str, namespace: str, timeout: float
) -> dict[str, Any]:
    cache, list_method = MODES[mode]
    raw = run_child(
        "kcp.bench.memory_child",
        [
            "--kubeconfig",
            str(env.kubeconfig),
            "--empty-namespace",
            empty_ns,
            "--namespace",
            namespace,
            "--cache",
            cache,
            "--list",
            list_method,
            "--timeout",
            str(timeout / 2),
        ],
        log_path=env.work_dir / "memory" / f"{namespace}-{mode}.log",
        timeout=timeout,
    )
    # The VmHWM the measured phase started from: its RSS after a reset, else the warm-up's peak.
    growth = (raw["peak_rss_bytes"] - raw["baseline_peak_rss_bytes"]) / MIB
    retained = (raw["rss_with_cache_bytes"] - raw["rss_empty_cache_bytes"]) / MIB
    loaded = raw["loaded"]
    return {
        "cache": cache,
        "list": list_method,
        "list_mode_used": loaded["list_mode"],
        "accept_header": loaded["accept_header"],
        "objects": loaded["objects"],
        "data_bytes_in_cache": loaded["data_bytes_in_cache"],
        "peak_reset": bool(raw["peak_reset"]),
        "warmup_peak_rss_mib": round(raw["warmup_peak_rss_bytes"] / MIB, 2),
        "baseline_peak_rss_mib": round(raw["baseline_peak_rss_bytes"] / MIB, 2),
        "peak_rss_mib": round(raw["peak_rss_bytes"] / MIB, 2),
        "peak_rss_growth_mib": round(growth, 3),
        "retained_rss_growth_mib": round(retained, 3),
        "sync_seconds": loaded["sync_seconds"],
        "cpu_seconds": loaded["cpu_seconds"],
        "threads": raw["threads"],
    }


def _measure_set(
    env: BenchEnvironment,
    name: str,
    *,
    count: int,
    data_bytes: int,
    settings: MemorySettings,
    empty_ns: str,
    progress: Progress,
) -> dict[str, Any]:
    namespace = env.unique(f"bench-mem-{name}")
    _create_namespace(env, namespace)
    try:
        populate(env, namespace, prefix=name, count=count, data_bytes=data_bytes, progress=progress)
        modes: dict[str, dict[str, Any]] = {}
        progress.step(f"memory: {name} Secrets, one fresh controller per mode", len(settings.modes))
        for mode in settings.modes:
            modes[mode] = _measure_mode(env, mode, empty_ns, namespace, settings.child_timeout)
            progress.advance()
    finally:
        _clean_up(env, [namespace])
    product, baseline = modes.get(PRODUCT_MODE), modes.get(BASELINE_MODE)
    result: dict[str, Any] = {
        "secrets": count,
        "bytes_per_secret": data_bytes,
        "secrets_mib": round(count * data_bytes / MIB, 2),
        "modes": modes,
    }
    if product is not None and baseline is not None:
        result["growth_ratio_full_over_metadata"] = round(
            table.ratio(
                baseline["peak_rss_growth_mib"],
                product["peak_rss_growth_mib"],
                floor=GROWTH_RESOLUTION_MIB,
            ),
            2,
        )
    return result


def measure(env: BenchEnvironment, settings: MemorySettings, progress: Progress) -> dict[str, Any]:
    """Both Secret sets, every mode in `settings`, each in a fresh child process."""
    empty_ns = env.unique("bench-mem-empty")
    _create_namespace(env, empty_ns)
    try:
        large = _measure_set(
            env,
            "large",
            count=settings.large_count,
            data_bytes=settings.large_bytes,
            settings=settings,
            empty_ns=empty_ns,
            progress=progress,
        )
        small = _measure_set(
            env,
            "small",
            count=settings.small_count,
            data_bytes=settings.small_bytes,
            settings=settings,
            empty_ns=empty_ns,
            progress=progress,
        )
    finally:
        _clean_up(env, [empty_ns])
    result: dict[str, Any] = {
        "large": large,
        "small": small,
        "peak_reset_after_warmup": all(
            m["peak_reset"] for s in (large, small) for m in s["modes"].values()
        ),
    }
    product = large["modes"].get(PRODUCT_MODE)
    baseline = large["modes"].get(BASELINE_MODE)
    if product is not None and baseline is not None:
        metadata_ok = product["peak_rss_growth_mib"] < METADATA_GROWTH_LIMIT_MIB
        full_ok = baseline["peak_rss_growth_mib"] > large["secrets_mib"]
        result["acceptance"] = {
            "metadata_growth_limit_mib": METADATA_GROWTH_LIMIT_MIB,
            "metadata_growth_under_limit": metadata_ok,
            "full_growth_over_secrets_size": full_ok,
            "streaming_list_used": product["list_mode_used"] == "streaming",
            "passed": metadata_ok and full_ok,
        }
    return result


def summary(result: dict[str, Any]) -> str:
    """The readable table of a `measure()` result."""
    rows = []
    for set_name in ("large", "small"):
        data = result[set_name]
        label = f"{data['secrets']} x {data['bytes_per_secret'] // 1024} KiB"
        for mode, m in data["modes"].items():
            rows.append(
                [
                    f"{label} {mode}",
                    m["list_mode_used"] or "-",
                    m.get("warmup_peak_rss_mib"),
                    m["baseline_peak_rss_mib"],
                    m["peak_rss_mib"],
                    m["peak_rss_growth_mib"],
                    m["retained_rss_growth_mib"],
                    f"{m['sync_seconds']:.2f}",
                ]
            )
    text = table.render(
        "memory: controller peak RSS (VmHWM, reset after an empty-cluster warm-up) over the "
        "RSS it started from, MiB",
        ["Secrets / mode", "list", "warm-up peak", "start", "peak", "growth", "retained", "sync s"],
        rows,
    )
    lines = [text]
    if not result.get("peak_reset_after_warmup", False):
        lines.append(
            "  peak NOT reset after the warm-up (/proc/<pid>/clear_refs refused): a peak may "
            "be the warm-up's, and growth understated"
        )
    for set_name in ("large", "small"):
        ratio = result[set_name].get("growth_ratio_full_over_metadata")
        if ratio is not None:
            lines.append(f"  {set_name}: full-object growth / metadata-only growth = {ratio:.1f}x")
    acceptance = result.get("acceptance")
    if acceptance is not None:
        lines.append(
            f"  acceptance (1 MiB set): metadata growth < {METADATA_GROWTH_LIMIT_MIB:.0f} MiB: "
            f"{table.fmt(acceptance['metadata_growth_under_limit'])}; full growth > Secrets' "
            f"size: {table.fmt(acceptance['full_growth_over_secrets_size'])}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--small-secrets", type=int, default=None, help="small Secrets (10000; --quick 2000)"
    )
    parser.add_argument("--large-secrets", type=int, default=None, help="Secrets of 1 MiB (100)")


def settings_from_args(args: argparse.Namespace) -> MemorySettings:
    settings = MemorySettings.quick() if args.quick else MemorySettings()
    changes: dict[str, Any] = {}
    if getattr(args, "small_secrets", None) is not None:
        changes["small_count"] = args.small_secrets
    if getattr(args, "large_secrets", None) is not None:
        changes["large_count"] = args.large_secrets
    if not changes:
        return settings
    return replace(settings, **changes)


def scenario(settings: MemorySettings) -> Scenario:
    return cluster_scenario("memory", measure, settings, summary)


def run(args: argparse.Namespace) -> int:
    return run_scenarios(args, [scenario(settings_from_args(args))])
