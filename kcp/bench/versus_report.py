"""The one table of `kcp bench versus`: every measure, per contender, and kcp's ratio to each.

Rows are (scenario, measure); columns the contenders in the order run, then
`kcp/<other>` for every other contender. A scenario a contender failed shows
`FAILED` in its cells and its error below the table — never dropped; figures measured
while some control plane was not Available carry a `!`, and the reason is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kcp.bench import table

__all__ = [
    "MEASURES",
    "PLOTTED",
    "cell",
    "comparison_rows",
    "pairs_of",
    "ratios",
    "render",
    "requests_by_kind",
    "requests_by_kind_rows",
]

MEASURES: tuple[tuple[str, str, str], ...] = (
    ("create+settle", "settle", "seconds_to_available"),
    ("create+settle", "settle", "cpu_cores"),
    ("create+settle", "settle", "apiserver_cpu_cores"),
    ("create+settle", "settle", "requests"),
    ("create+settle", "settle", "requests_per_minute"),
    ("create+settle", "settle", "workload_requests_per_minute"),
    ("create+settle", "settle", "port_forwards_per_minute"),
    ("steady", "steady", "cpu_cores"),
    ("steady", "steady", "cpu_ms_per_reconcile"),
    ("steady", "steady", "apiserver_cpu_cores"),
    ("steady", "steady", "reconciles"),
    ("steady", "steady", "requests_per_minute"),
    ("steady", "steady", "workload_requests_per_minute"),
    ("steady", "steady", "port_forwards_per_minute"),
    ("steady", "steady", "threads"),
    ("steady", "steady", "goroutines"),
    ("change all", "change", "status_latency_ms.p50"),
    ("change all", "change", "status_latency_ms.p99"),
    ("change all", "change", "machines_latency_ms.p50"),
    ("change all", "change", "machines_latency_ms.p99"),
    ("change all", "change", "cpu_cores"),
    ("change all", "change", "cpu_ms_per_reconcile"),
    ("change all", "change", "apiserver_cpu_cores"),
    ("change all", "change", "requests"),
    ("change all", "change", "requests_per_minute"),
    ("change all", "change", "workload_requests_per_minute"),
    ("change all", "change", "port_forwards_per_minute"),
    ("change all", "change", "machines_created"),
    ("rollout 3 cp", "rollout_scale_up", "rollout.seconds"),
    ("rollout 3 cp", "rollout_scale_up", "rollout.machines_created"),
    ("scale-up 1->3", "rollout_scale_up", "scale_up.seconds"),
    ("scale-up 1->3", "rollout_scale_up", "scale_up.machines_created"),
    ("rollout+scale-up", "rollout_scale_up", "cpu_cores"),
    ("rollout+scale-up", "rollout_scale_up", "cpu_ms_per_reconcile"),
    ("rollout+scale-up", "rollout_scale_up", "requests"),
    ("rollout+scale-up", "rollout_scale_up", "requests_per_minute"),
    ("rollout+scale-up", "rollout_scale_up", "workload_requests_per_minute"),
    ("rollout+scale-up", "rollout_scale_up", "port_forwards_per_minute"),
    ("whole run", "", "peak_rss_mib"),
    ("whole run", "", "quorum_lost_samples"),
    ("whole run", "", "quorum_samples"),
)
"""(scenario label, phase key in the results ("" for the whole run), measure path)."""

_LABELS = {
    "seconds_to_available": "seconds to Available",
    "cpu_cores": "CPU cores",
    "cpu_ms_per_reconcile": "CPU ms / reconcile",
    "apiserver_cpu_cores": "API server CPU cores",
    "reconciles": "reconciles",
    "requests": "mgmt API requests",
    "requests_per_minute": "mgmt API requests / min",
    "workload_requests_per_minute": "workload API requests / min",
    "port_forwards_per_minute": "port-forwards / min",
    "threads": "OS threads",
    "goroutines": "goroutines",
    "status_latency_ms.p50": "change->status p50 ms",
    "status_latency_ms.p99": "change->status p99 ms",
    "machines_latency_ms.p50": "change->Machines p50 ms",
    "machines_latency_ms.p99": "change->Machines p99 ms",
    "machines_created": "Machines created",
    "rollout.seconds": "seconds",
    "scale_up.seconds": "seconds",
    "rollout.machines_created": "Machines created",
    "scale_up.machines_created": "Machines created",
    "peak_rss_mib": "peak RSS MiB",
    "quorum_lost_samples": "etcd samples w/o quorum",
    "quorum_samples": "etcd quorum samples",
}

FAILED = "FAILED"

PLOTTED: tuple[tuple[str, str], ...] = (
    ("settle", "seconds_to_available"),
    ("settle", "cpu_cores"),
    ("settle", "workload_requests_per_minute"),
    ("steady", "cpu_cores"),
    ("steady", "cpu_ms_per_reconcile"),
    ("steady", "requests_per_minute"),
    ("steady", "port_forwards_per_minute"),
    ("change", "status_latency_ms.p50"),
    ("change", "status_latency_ms.p99"),
    ("change", "cpu_cores"),
    ("rollout_scale_up", "rollout.seconds"),
    ("rollout_scale_up", "scale_up.seconds"),
    ("", "peak_rss_mib"),
)
"""The measures the plot shows as kcp/other ratios."""


Figure = float | int | str | None


def cell(result: dict[str, Any], phase: str, path: str) -> Figure:
    """A contender's figure, FAILED if the phase failed, None if not measured."""
    source: Any = result if not phase else (result.get("phases") or {}).get(phase)
    if source is None:
        return None
    for part in path.split("."):
        if not isinstance(source, dict):
            return None
        if phase and "error" in source:
            return FAILED
        source = source.get(part)
    if isinstance(source, bool) or not isinstance(source, int | float):
        return None
    return source


def _number(value: Figure) -> str:
    if isinstance(value, float):
        return table.fmt(value, 3 if abs(value) < 1 else 2 if abs(value) < 10 else 1)
    return table.fmt(value)


def _ratio(mine: Figure, theirs: Figure) -> str:
    if isinstance(mine, str | None) or isinstance(theirs, str | None):
        return "-"
    if theirs == 0:
        return "-" if mine == 0 else "inf"
    return f"{mine / theirs:.2f}"


def comparison_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per measure: label, each contender's value, then kcp/<other> ratios."""
    names = [r["contender"] for r in results]
    mine = results[names.index("kcp")] if "kcp" in names else None
    others = [r for r in results if r is not mine]
    rows: list[list[str]] = []
    for scenario, phase, path in MEASURES:
        values = [cell(r, phase, path) for r in results]
        if all(v is None for v in values):
            continue
        row = [f"{scenario}: {_LABELS.get(path, path)}"]
        row += [
            _number(v)
            + ("!" if phase and "available_error" in (r.get("phases") or {}).get(phase, {}) else "")
            for r, v in zip(results, values, strict=True)
        ]
        if mine is not None:
            own = cell(mine, phase, path)
            row += [_ratio(own, cell(other, phase, path)) for other in others]
        rows.append(row)
    return rows


def pairs_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of a versus result whose figures compare with each other: each pair (kcp
    beside one Cluster API contender), or the one run of every contender."""
    if "pairs" in result:
        return list(result["pairs"])
    return [{"contenders": result["contenders"], "wall_seconds": result.get("wall_seconds")}]


def ratios(results: Sequence[dict[str, Any]], other: str) -> list[tuple[str, float]]:
    """(label, kcp/other) for each plotted measure both have a positive figure for."""
    by_name = {r["contender"]: r for r in results}
    mine, theirs = by_name.get("kcp"), by_name.get(other)
    if mine is None or theirs is None:
        return []
    found: list[tuple[str, float]] = []
    for phase, path in PLOTTED:
        a, b = cell(mine, phase, path), cell(theirs, phase, path)
        if isinstance(a, int | float) and isinstance(b, int | float) and a > 0 and b > 0:
            scenario = next(m[0] for m in MEASURES if m[1:] == (phase, path))
            found.append((f"{scenario}: {_LABELS.get(path, path)}", a / b))
    return found


def requests_by_kind(result: dict[str, Any], key: str = "requests_by_kind") -> dict[str, int]:
    """A contender's management API requests over every phase, by verb and resource (its
    workload API requests with `key="workload_requests_by_kind"`)."""
    totals: dict[str, int] = {}
    for figures in (result.get("phases") or {}).values():
        for kind, count in (figures.get(key) or {}).items():
            totals[kind] = totals.get(kind, 0) + int(count)
    return totals


def requests_by_kind_rows(
    results: Sequence[dict[str, Any]], top: int = 20, key: str = "requests_by_kind"
) -> list[list[str]]:
    """The `top` request kinds by their largest count among contenders, one column each, and
    the difference kcp minus each other (what kcp does more is positive)."""
    names = [r["contender"] for r in results]
    counts = [requests_by_kind(r, key) for r in results]
    kinds = sorted(
        {k for c in counts for k in c}, key=lambda k: (-max(c.get(k, 0) for c in counts), k)
    )
    mine = counts[names.index("kcp")] if "kcp" in names else None
    rows: list[list[str]] = []
    for kind in kinds[:top]:
        row = [kind, *(str(c.get(kind, 0)) for c in counts)]
        if mine is not None:
            row += [
                f"{mine.get(kind, 0) - c.get(kind, 0):+d}"
                for n, c in zip(names, counts, strict=True)
                if n != "kcp"
            ]
        rows.append(row)
    return rows


def render(results: Sequence[dict[str, Any]], title: str) -> str:
    names = [r["contender"] for r in results]
    headers = ["measure", *names]
    if "kcp" in names:
        headers += [f"kcp/{n}" for n in names if n != "kcp"]
    lines = [table.render(title, headers, comparison_rows(results))]
    for key, label, top in (
        ("requests_by_kind", "mgmt API requests, all phases", 20),
        ("workload_requests_by_kind", "workload API requests, all phases", 12),
    ):
        kinds = requests_by_kind_rows(results, top, key)
        if kinds:
            kind_headers = [label, *names]
            if "kcp" in names:
                kind_headers += [f"kcp-{n}" for n in names if n != "kcp"]
            lines.append(table.render("", kind_headers, kinds))
    for result in results:
        if result.get("error"):
            lines.append(f"  {result['contender']}: FAILED to start: {result['error']}")
        for phase, figures in (result.get("phases") or {}).items():
            for part, found in [(phase, figures), *_parts(phase, figures)]:
                if "error" in found:
                    lines.append(f"  {result['contender']} {part}: FAILED: {found['error']}")
                if "available_error" in found:
                    lines.append(
                        f"  {result['contender']} {part} (figures marked !): "
                        f"{found['available_error']}"
                    )
        for lost in (result.get("quorum_lost") or [])[:5]:
            lines.append(f"  {result['contender']}: etcd without quorum at {lost}")
    return "\n".join(lines)


_BREAKDOWNS = (
    "port_forwards_by_pod",
    "requests_by_kind",
    "workload_requests_by_agent",
    "workload_requests_by_kind",
)


def _parts(phase: str, figures: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The sub-scenarios a phase measured together (rollout and scale-up)."""
    return [
        (f"{phase}.{k}", v)
        for k, v in figures.items()
        if isinstance(v, dict) and k not in _BREAKDOWNS
    ]
