"""`kcp bench versus --profile DIR`: where each controller's CPU goes settling and rolling out.

Every contender then runs with its profiler endpoint on (`--profiler-address`: kcp's
py-spy, Cluster API's Go net/http/pprof). A phase's length is not known in advance
and neither endpoint can end a profile early and still answer, so a `PhaseProfile`
asks for back-to-back slices of `SLICE_SECONDS` from the phase's start until it
ends; the last slice runs on past the end by less than a slice (the bench waits
for it before the next phase, so the next phase is measured without a profiler).
The slices are merged into one file per contender and phase: py-spy's collapsed
stacks (`<contender>.<phase>.collapsed.txt`, for speedscope or flamegraph.pl) and
a pprof profile (`<contender>.<phase>.pb.gz`, merged by `go tool pprof -proto`).
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kcp.bench import stacks, table

__all__ = [
    "PROFILED_PHASES",
    "SLICE_SECONDS",
    "PhaseProfile",
    "render",
    "summarize_file",
]

PROFILED_PHASES = ("settle", "rollout_scale_up")
SLICE_SECONDS = 10
"""Long enough that py-spy's attach per slice is noise, short enough that a profile
runs at most this far past its phase."""
TOP = 10


def _go() -> str:
    return shutil.which("go") or "/usr/local/go/bin/go"


def _go_tool_pprof(*args: str, timeout: float = 300.0) -> str:
    """`go tool pprof ARGS` (built from GOROOT the first time; no network)."""
    completed = subprocess.run(
        [_go(), "tool", "pprof", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"go tool pprof failed: {completed.stderr.strip()[-300:]}")
    return completed.stdout


class PhaseProfile:
    """Slices of a contender's CPU profile from `start()` until `stop()`, merged into `path`."""

    def __init__(self, base_url: str, program: str, out_dir: Path, stem: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.program = program
        """"kcp" (py-spy, collapsed stacks) or "capi" (Go pprof)."""
        suffix = ".collapsed.txt" if program == "kcp" else ".pb.gz"
        self.path = out_dir / f"{stem}{suffix}"
        self.slices: list[bytes] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._seconds = 0.0

    def _url(self) -> str:
        # py-spy pausing kcp's threads for every sample tripled kcp's CPU in a rollout: read
        # the stacks of the running process instead.
        query = f"seconds={SLICE_SECONDS}" + (
            "&format=raw&nonblocking=1" if self.program == "kcp" else ""
        )
        return f"{self.base_url}/debug/pprof/profile?{query}"

    def start(self) -> PhaseProfile:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._record, name="versus-profile", daemon=True)
        self._thread.start()
        return self

    def _record(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self._url(), timeout=SLICE_SECONDS + 60) as response:  # noqa: S310
                    self.slices.append(response.read())
            except (OSError, http.client.HTTPException) as error:
                detail = (
                    error.read().decode(errors="replace")
                    if isinstance(error, urllib.error.HTTPError)
                    else ""
                )
                self.errors.append(f"{error} {detail}".strip()[:300])
                self._stop.wait(1.0)

    def stop(self) -> None:
        """Wait for the slice under way, then write the merged profile."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SLICE_SECONDS + 90)
        self._seconds = time.monotonic() - self._started
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._write()
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
            self.errors.append(f"writing {self.path.name}: {error}")

    def _write(self) -> None:
        if not self.slices:
            return
        if self.program == "kcp":
            # Collapsed stacks merge by concatenation: readers sum repeated stacks.
            self.path.write_bytes(
                b"".join(s if s.endswith(b"\n") else s + b"\n" for s in self.slices)
            )
            return
        with tempfile.TemporaryDirectory(prefix="kcp-versus-pprof-") as directory:
            parts = []
            for index, data in enumerate(self.slices):
                part = Path(directory) / f"slice-{index:03d}.pb.gz"
                part.write_bytes(data)
                parts.append(str(part))
            _go_tool_pprof("-proto", f"-output={self.path}", *parts)

    def result(self) -> dict[str, Any]:
        """The file, how it was recorded, and its summary (run after the fleet has stopped:
        `go tool pprof` takes CPU the measured phases should not share)."""
        found: dict[str, Any] = {
            "file": str(self.path),
            "slices": len(self.slices),
            "slice_seconds": SLICE_SECONDS,
            "recorded_seconds": round(self._seconds, 1),
            "profiler": "py-spy (raw, 100 Hz, nonblocking)"
            if self.program == "kcp"
            else "Go pprof",
            "unit": "samples" if self.program == "kcp" else "CPU s",
        }
        if self.errors:
            found["errors"] = self.errors[:5]
            found["error_count"] = len(self.errors)
        if self.path.exists():
            try:
                found["summary"] = summarize_file(self.path, self.program).as_dict()
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
                found["summary_error"] = str(error)
        return found


def summarize_file(path: Path, program: str, top: int = TOP) -> stacks.StackSummary:
    """A saved profile's summary: py-spy's samples (not seconds: py-spy counts samples, and
    falls behind its rate on a loaded machine) with known waits left out of the shares; a
    Go profile's CPU seconds as pprof lists them."""
    if program == "kcp":
        samples = stacks.parse_collapsed(path.read_text())
        return stacks.summarize(samples, top, waiting=stacks.is_python_wait)
    return stacks.summarize(stacks.parse_pprof_traces(_go_tool_pprof("-traces", str(path))), top)


def _short(function: str, width: int = 72) -> str:
    return function if len(function) <= width else "…" + function[-(width - 1) :]


def _percent(share: float) -> str:
    return f"{100 * share:.1f}"


def _phase_cpu(result: dict[str, Any], phase: str) -> str:
    figures = (result.get("phases") or {}).get(phase) or {}
    wall, cores = figures.get("window_seconds"), figures.get("cpu_cores")
    if not isinstance(wall, int | float) or not isinstance(cores, int | float):
        return ""
    return f"; the window: {wall:.0f} s, {wall * cores:.1f} CPU s by /proc"


def _render_one(result: dict[str, Any], phase: str, profile: dict[str, Any]) -> list[str]:
    name = result["contender"]
    head = (
        f"profile {name}, {phase}: {profile.get('profiler')}, {profile.get('slices')} slices of "
        f"{profile.get('slice_seconds')} s over {profile.get('recorded_seconds')} s"
        + _phase_cpu(result, phase)
    )
    lines = [head]
    errors = profile.get("errors") or []
    if errors:
        lines.append(
            f"  {profile.get('error_count')} slice requests failed, the first: {errors[0]}"
        )
    summary = profile.get("summary")
    if summary is None:
        lines.append(f"  no summary: {profile.get('summary_error', 'no profile recorded')}")
        return lines
    unit = profile.get("unit", "")
    lines[0] += (
        f"; sampled {summary['active']:.1f} {unit} busy"
        + (
            f" ({summary['total']:.1f} with known waits)"
            if summary["total"] != summary["active"]
            else ""
        )
        + f"; {profile['file']}"
    )
    for key, title, first, second in (
        ("by_self", "by self", "self_share", "cum_share"),
        ("by_cumulative", "by cumulative", "cum_share", "self_share"),
    ):
        rows = [
            [_short(row["function"]), _percent(row[first]), _percent(row[second])]
            for row in summary[key]
        ]
        headers = [
            f"{name} {phase}, {title}",
            first.split("_")[0] + " %",
            second.split("_")[0] + " %",
        ]
        lines.append(table.render("", headers, rows).lstrip("\n"))
    packages = ", ".join(
        f"{p['package']} {_percent(p['self_share'])}" for p in summary["by_package"]
    )
    lines.append(f"  self % by package: {packages}")
    return lines


def render(results: Sequence[dict[str, Any]]) -> str:
    """Each contender's profiled phases: top functions by self and by cumulative share."""
    lines: list[str] = []
    for result in results:
        for phase, profile in (result.get("profiles") or {}).items():
            lines += ["", *_render_one(result, phase, profile)]
    return "\n".join(lines)
