"""What the reliability suite did, summed over the pytest-xdist workers that ran it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Summary:
    """Faults injected, kills survived, bad inputs tried, leaks found, and notes."""

    faults: list[str] = field(default_factory=list)
    kills: int = 0
    kills_mid_transition: int = 0
    bad_inputs: list[str] = field(default_factory=list)
    admission_rejected: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    runtime: float | None = None
    """Seconds the session ran, once it is over (None: until now)."""

    def empty(self) -> bool:
        return not (self.faults or self.bad_inputs or self.leaks or self.notes)

    def finished(self) -> dict[str, Any]:
        """The summary as plain data, its runtime fixed: what a worker hands over."""
        return {**asdict(self), "runtime": self._runtime()}

    @classmethod
    def merged(cls, parts: list[dict[str, Any]]) -> Summary:
        """One summary of the workers' parts: lists joined, counts added, the longest
        runtime (they ran side by side)."""
        total = cls(runtime=0.0)
        for part in parts:
            for name in ("faults", "bad_inputs", "admission_rejected", "leaks", "notes"):
                getattr(total, name).extend(part[name])
            total.kills += part["kills"]
            total.kills_mid_transition += part["kills_mid_transition"]
            total.runtime = max(total.runtime or 0.0, part["runtime"])
        return total

    def _runtime(self) -> float:
        return self.runtime if self.runtime is not None else time.monotonic() - self.started

    def lines(self) -> list[str]:
        return [
            f"faults injected:      {len(self.faults)} ({', '.join(self.faults) or '-'})",
            f"kills survived:       {self.kills} SIGKILLs of kcp run "
            f"({self.kills_mid_transition} during a scale or rollout step)",
            f"bad inputs tried:     {len(self.bad_inputs)} reached the controller, "
            f"{len(self.admission_rejected)} refused by the API server",
            f"leaks found:          {len(self.leaks)}"
            + (f" ({'; '.join(self.leaks)})" if self.leaks else ""),
            *self.notes,
            f"reliability runtime:  {self._runtime():.0f}s",
        ]


SUMMARY = Summary()
"""This process's summary: the reliability suite's and the e2e modules' cases add to it."""
