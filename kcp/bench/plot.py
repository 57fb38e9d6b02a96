"""The benchmark picture: one PNG with a panel per measured scenario (matplotlib, Agg).

Panels appear for the scenarios present in the results (a sub-benchmark plots
its own panels only): reconcile CPU cached vs naive by cluster count, Secret
memory growth by caching mode, scale latency, scale resources, and the
profile's top functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["plot"]

Panel = Callable[[Any, dict[str, Any]], None]


def _tracker_runs(tracker: dict[str, Any]) -> list[dict[str, Any]]:
    runs = tracker.get("sweep") or [tracker]
    return sorted((r for r in runs if "cached" in r), key=lambda r: r["clusters"])


def _tracker_panel(ax: Any, tracker: dict[str, Any]) -> None:
    runs = _tracker_runs(tracker)
    clusters = [r["clusters"] for r in runs]
    cached = [r["cached"]["cpu_ms_per_reconcile"] for r in runs]
    naive = [r["naive"]["cpu_ms_per_reconcile"] for r in runs]
    ax.plot(clusters, naive, "o-", color="tab:red", label="naive (new key per reconcile)")
    ax.plot(clusters, cached, "o-", color="tab:green", label="cached (kcp tracker)")
    for n, c, v in zip(clusters, cached, naive, strict=True):
        ax.annotate(f"{v / max(c, 1e-9):.0f}x", (n, v), textcoords="offset points", xytext=(0, 6))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clusters")
    ax.set_ylabel("CPU ms per reconcile")
    ax.set_title("Reconcile CPU: cached vs naive")
    ax.legend(fontsize=8)


def _memory_panel(ax: Any, memory: dict[str, Any]) -> None:
    sets = [s for s in ("large", "small") if s in memory]
    modes: list[str] = []
    for name in sets:
        modes.extend(m for m in memory[name]["modes"] if m not in modes)
    width = 0.8 / max(len(modes), 1)
    colors = {
        "metadata_streaming": "tab:green",
        "metadata_paginated": "tab:olive",
        "full_streaming": "tab:orange",
        "full_paginated": "tab:red",
    }
    for i, mode in enumerate(modes):
        values = [memory[s]["modes"].get(mode, {}).get("peak_rss_growth_mib", 0.0) for s in sets]
        positions = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(sets))]
        bars = ax.bar(positions, values, width, label=mode, color=colors.get(mode))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    labels = [
        f"{memory[s]['secrets']} x {memory[s]['bytes_per_secret'] // 1024} KiB\n"
        f"({memory[s]['secrets_mib']:.1f} MiB)"
        for s in sets
    ]
    ax.set_xticks(range(len(sets)), labels)
    ax.set_ylabel("peak RSS growth, MiB")
    ax.set_title("Controller memory over an empty cluster")
    ax.legend(fontsize=7)


def _scale_latency_panel(ax: Any, scale: dict[str, Any]) -> None:
    points = scale["points"]
    clusters = [p["clusters"] for p in points]
    ax.plot(clusters, [p["resync_seconds"] for p in points], "s-", label="full resync, s")
    ax.plot(
        clusters,
        [p["change_latency_ms"]["p50"] / 1000 for p in points],
        "o-",
        label="change -> reconcile p50, s",
    )
    ax.plot(
        clusters,
        [p["change_latency_ms"]["p99"] / 1000 for p in points],
        "o--",
        label="change -> reconcile p99, s",
    )
    ax.set_xscale("log")
    ax.set_xlabel("clusters")
    ax.set_ylabel("seconds")
    ax.set_title(f"Scale: latency ({scale.get('controller', '?')})")
    ax.legend(fontsize=7)


def _scale_memory_panel(ax: Any, scale: dict[str, Any]) -> None:
    points = scale["points"]
    clusters = [p["clusters"] for p in points]
    ax.plot(clusters, [p["peak_rss_mib"] for p in points], "o-", color="tab:blue")
    for n, p in zip(clusters, points, strict=True):
        ax.annotate(
            f"{p['peak_rss_mib']:.0f}",
            (n, p["peak_rss_mib"]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color="tab:blue",
        )
    ax.set_xscale("log")
    ax.set_xlabel("clusters")
    ax.set_ylabel("peak RSS (VmHWM), MiB", color="tab:blue")
    ax.set_ylim(bottom=0)
    twin = ax.twinx()
    twin.plot(clusters, [p["threads"] for p in points], "^--", color="tab:gray")
    twin.set_ylabel("threads (median, steady)", color="tab:gray")
    twin.set_ylim(bottom=0)
    ax.set_title("Scale: peak RSS and threads")


def _scale_cpu_panel(ax: Any, scale: dict[str, Any]) -> None:
    points = scale["points"]
    kinds = [
        ("startup_cpu_cores", "startup"),
        ("resync_cpu_cores", "full resync"),
        ("steady_cpu_cores", "steady"),
    ]
    width = 0.8 / len(kinds)
    for i, (key, label) in enumerate(kinds):
        positions = [j + (i - 1) * width for j in range(len(points))]
        bars = ax.bar(positions, [p[key] for p in points], width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(points)), [f"{p['clusters']} clusters" for p in points])
    ax.set_ylabel("CPU cores (average)")
    ax.set_title("Scale: controller CPU")
    ax.legend(fontsize=7)


def _profile_panel(ax: Any, profile: dict[str, Any]) -> None:
    top = list(reversed(profile["top_functions"][:10]))
    names = [f"{t['function'][-40:]} ({Path(t['file']).name})" for t in top]
    ax.barh(range(len(top)), [100 * t["self_share"] for t in top], color="tab:purple")
    ax.set_yticks(range(len(top)), names, fontsize=6)
    ax.set_xlabel("% of active samples (self)")
    steady = 100 * profile["steady"]["keygen_share"]
    ax.set_title(f"Profile at {profile['clusters']} clusters (key generation {steady:.2f} %)")


def _ratio_axis(ax: Any, labels: list[str], title: str) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    # Plain ticks: the log axis's own minor labels overlap at these ranges.
    ax.xaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("kcp / Cluster API's KCP (below 1: kcp lower)")
    ax.set_title(title)
    ax.legend(fontsize=7)


def _ratio_points(ax: Any, series: list[tuple[str, list[tuple[str, float]]]]) -> list[str]:
    """One marker per measure for each (legend, ratios) series, offset so they do not hide
    each other; returns the measures' labels in axis order."""
    labels: list[str] = []
    for _, found in series:
        labels.extend(label for label, _ in found if label not in labels)
    for index, (legend, found) in enumerate(series):
        offset = 0.8 * index / max(1, len(series))
        ax.plot(
            [value for _, value in found],
            [labels.index(label) + offset for label, _ in found],
            "o",
            label=legend,
        )
    return labels


def _versus_panel(ax: Any, versus: dict[str, Any]) -> None:
    from kcp.bench.versus_report import pairs_of, ratios

    if "contenders" not in versus and "pairs" not in versus:  # the shared-fleet sizes only
        ax.text(0.5, 0.5, "versus: shared fleet only (see its panel)", ha="center")
        return
    runs = [pair["contenders"] for pair in pairs_of(versus)]
    series = [
        (f"kcp / {r['contender']}", ratios(run, r["contender"]))
        for run in runs
        for r in run
        if r["contender"] != "kcp"
    ]
    labels = _ratio_points(ax, series)
    _ratio_axis(ax, labels, f"versus: {versus['clusters']} clusters on real simulated machines")


def _versus_shared_panel(ax: Any, versus: dict[str, Any]) -> None:
    from kcp.bench.versus_report import ratios

    shared = versus.get("shared") or {}
    series = [
        (
            f"{point['clusters']} clusters: kcp / {r['contender']}",
            ratios(point["contenders"], r["contender"]),
        )
        for point in shared.get("points") or []
        for r in point["contenders"]
        if r["contender"] == "capi"
    ]
    labels = _ratio_points(ax, series)
    _ratio_axis(ax, labels, "versus: the cheap shared fleet (kcp / capi)")


def _has_shared(versus: dict[str, Any]) -> bool:
    return bool((versus.get("shared") or {}).get("points"))


_PANELS: list[tuple[str, Panel]] = [
    ("tracker", _tracker_panel),
    ("memory", _memory_panel),
    ("scale", _scale_latency_panel),
    ("scale", _scale_memory_panel),
    ("scale", _scale_cpu_panel),
    ("profile", _profile_panel),
    ("versus", _versus_panel),
    ("versus", _versus_shared_panel),
]
_SHOWN_IF: dict[Panel, Callable[[dict[str, Any]], bool]] = {_versus_shared_panel: _has_shared}


def _always(_results: dict[str, Any]) -> bool:
    return True


"""Panels drawn only when their scenario's results hold what they show."""


def plot(results: dict[str, Any], path: Path) -> Path:
    """Draw the panels of every scenario present (and not failed) in `results` into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [
        (name, panel)
        for name, panel in _PANELS
        if isinstance(results.get(name), dict)
        and "error" not in results[name]
        and _SHOWN_IF.get(panel, _always)(results[name])
    ]
    columns = 2 if len(chosen) > 1 else 1
    rows = max(1, (len(chosen) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (name, panel) in zip(flat, chosen, strict=False):
        panel(ax, results[name])
        ax.grid(True, alpha=0.3)
    for ax in flat[len(chosen) :]:
        ax.axis("off")
    if not chosen:
        flat[0].text(0.5, 0.5, "no results", ha="center", va="center")
    environment = results.get("environment") or {}
    figure.suptitle(
        f"kcp benchmarks ({environment.get('cpus', '?')} CPUs"
        f"{', quick' if environment.get('quick') else ''})"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
