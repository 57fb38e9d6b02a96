"""Sampled call stacks from py-spy or Go's pprof, and where their CPU goes.

Both profilers come down to weighted stacks, root first: py-spy's `raw` format is
one collapsed stack a line (`f;g;h 12`, 12 samples); `go tool pprof -traces` lists
every sample's stack, leaf first, under its CPU time. One summary serves both, so
a table of kcp reads like one of Cluster API's KCP: the share of each function's
self time (it was the innermost frame) and cumulative time (it was anywhere on the
stack, counted once per stack), and self time by package.

Python frames are `name (file)` (py-spy's line number dropped, so one function is
one row); Go frames are pprof's function names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kcp.bench.speedscope import is_waiting

__all__ = [
    "StackSummary",
    "Stacks",
    "is_python_wait",
    "merge",
    "package_of",
    "parse_collapsed",
    "parse_pprof_traces",
    "summarize",
]

Stacks = dict[tuple[str, ...], float]
"""Weight (samples or seconds) by stack, root first."""

_PY_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_DURATION = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[a-zµ]*)$")
_UNITS = {
    "": 1.0,
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "hrs": 3600.0,
    "h": 3600.0,
}


def _python_frame(frame: str) -> str:
    """`name (file:line)` -> `name (file)`."""
    found = _PY_FRAME.match(frame)
    if found is None:
        return frame
    return f"{found['name']} ({found['file']})"


def parse_collapsed(text: str) -> Stacks:
    """py-spy's raw output (`frame;frame;... count` a line, root first), line numbers
    dropped; the same stack on several lines (merged slices) is summed."""
    stacks: Stacks = {}
    for line in text.splitlines():
        body, _, count = line.rstrip().rpartition(" ")
        if not body:
            continue
        try:
            weight = float(count)
        except ValueError:
            continue
        stack = tuple(_python_frame(f) for f in body.split(";"))
        stacks[stack] = stacks.get(stack, 0.0) + weight
    return stacks


def _seconds(value: str) -> float | None:
    found = _DURATION.match(value)
    if found is None or found["unit"] not in _UNITS:
        return None
    return float(found["number"]) * _UNITS[found["unit"]]


def parse_pprof_traces(text: str) -> Stacks:
    """`go tool pprof -traces` of a CPU profile: seconds by stack (root first). Each sample
    is a block between `-----+---` rules: `<time>   <leaf>`, then its callers one a line;
    `(inline)` marks are dropped, header and label lines (`key:  value`) skipped."""
    stacks: Stacks = {}
    weight: float | None = None
    frames: list[str] = []

    def close() -> None:
        if weight is not None and frames:
            stack = tuple(reversed(frames))
            stacks[stack] = stacks.get(stack, 0.0) + weight

    for line in text.splitlines():
        if line.startswith("-----"):
            close()
            weight, frames = None, []
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if weight is None:
            first, _, rest = stripped.partition(" ")
            weight = _seconds(first)
            if weight is None:
                continue  # a header (File:, Duration: ...) or label (key:  value) line
            stripped = rest.strip()
            if not stripped:
                continue
        frames.append(stripped.removesuffix(" (inline)"))
    close()
    return stacks


def merge(parts: Iterable[Stacks]) -> Stacks:
    merged: Stacks = {}
    for part in parts:
        for stack, weight in part.items():
            merged[stack] = merged.get(stack, 0.0) + weight
    return merged


def is_python_wait(frame: str) -> bool:
    """Whether a py-spy frame is a known wait (`kcp.bench.speedscope.WAITING_LEAVES`):
    py-spy cannot always tell an idle thread, so those samples are left out of shares."""
    found = _PY_FRAME.match(frame)
    if found is None:
        return False
    return is_waiting({"name": found["name"], "file": found["file"]})


def package_of(frame: str) -> str:
    """The package a frame's code is in: `kcp.controlplane`, `urllib3`, `json` for Python
    (two levels for kcp's own, one for the rest); the import path for Go
    (`k8s.io/client-go/tools/cache`, `runtime`)."""
    found = _PY_FRAME.match(frame)
    if found is not None:
        file = found["file"]
        if file.startswith("<"):
            return file.split(" ", 1)[0].strip("<>")
        parts = file.removesuffix(".py").split("/")
        depth = 2 if parts[0] == "kcp" and len(parts) > 2 else 1
        return ".".join(parts[:depth])
    head, slash, tail = frame.rpartition("/")
    return head + slash + tail.split(".", 1)[0]


@dataclass(frozen=True)
class StackSummary:
    """Where a profile's time went; shares are of `active` (samples not in a known wait)."""

    total: float
    active: float
    by_self: list[tuple[str, float, float]]
    """(function, self share, cumulative share), by self share, largest first."""
    by_cumulative: list[tuple[str, float, float]]
    """(function, self share, cumulative share), by cumulative share, largest first."""
    by_package: list[tuple[str, float]]
    """(package, self share), largest first."""

    def as_dict(self) -> dict[str, Any]:
        def rows(found: list[tuple[str, float, float]]) -> list[dict[str, Any]]:
            return [
                {"function": f, "self_share": round(s, 4), "cum_share": round(c, 4)}
                for f, s, c in found
            ]

        return {
            "total": round(self.total, 3),
            "active": round(self.active, 3),
            "by_self": rows(self.by_self),
            "by_cumulative": rows(self.by_cumulative),
            "by_package": [{"package": p, "self_share": round(s, 4)} for p, s in self.by_package],
        }


def summarize(
    stacks: Stacks, top: int = 10, waiting: Callable[[str], bool] | None = None
) -> StackSummary:
    """The `top` functions by self and by cumulative share, and self share by package.
    A stack whose leaf satisfies `waiting` counts in `total` only."""
    total = active = 0.0
    own: dict[str, float] = {}
    cumulative: dict[str, float] = {}
    for stack, weight in stacks.items():
        if not stack:
            continue
        total += weight
        if waiting is not None and waiting(stack[-1]):
            continue
        active += weight
        own[stack[-1]] = own.get(stack[-1], 0.0) + weight
        for frame in set(stack):
            cumulative[frame] = cumulative.get(frame, 0.0) + weight
    packages: dict[str, float] = {}
    for frame, weight in own.items():
        package = package_of(frame)
        packages[package] = packages.get(package, 0.0) + weight

    def share(weight: float) -> float:
        return weight / active if active else 0.0

    def ranked(by: dict[str, float]) -> list[tuple[str, float, float]]:
        names = sorted(by, key=lambda f: (-by[f], f))[:top]
        return [(f, share(own.get(f, 0.0)), share(cumulative[f])) for f in names]

    return StackSummary(
        total,
        active,
        ranked(own),
        ranked(cumulative),
        [(p, share(w)) for p, w in sorted(packages.items(), key=lambda i: (-i[1], i[0]))[:top]],
    )
