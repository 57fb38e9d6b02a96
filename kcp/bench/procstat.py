"""What the kernel says about a process: peak and current RSS, threads, CPU time.

Read from `/proc/<pid>/status` and `/proc/<pid>/stat`, so a benchmark can watch
a child process without instrumenting it. `VmHWM` is the peak resident set
since the process started (or since `reset_peak`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MIB", "ProcessSample", "cpu_seconds", "reset_peak", "sample", "status_fields"]

MIB = 1024 * 1024

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    """One reading of a process; sizes in bytes, CPU in seconds (user + system)."""

    rss: int
    peak_rss: int
    threads: int
    cpu_seconds: float

    @property
    def rss_mib(self) -> float:
        return self.rss / MIB

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / MIB


def status_fields(pid: int | str = "self") -> dict[str, str]:
    """`/proc/<pid>/status` as a dict of raw values ("VmHWM" -> "12345 kB")."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def _kib(value: str) -> int:
    number, _, unit = value.partition(" ")
    if unit.strip() not in ("kB", ""):
        raise ValueError(f"unexpected unit in /proc status value {value!r}")
    return int(number) * 1024


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU seconds of all the process's threads so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    after_name = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / _CLOCK_TICKS


def sample(pid: int | str = "self") -> ProcessSample:
    fields = status_fields(pid)
    return ProcessSample(
        rss=_kib(fields["VmRSS"]),
        peak_rss=_kib(fields["VmHWM"]),
        threads=int(fields["Threads"]),
        cpu_seconds=cpu_seconds(pid),
    )


def reset_peak(pid: int | str = "self") -> bool:
    """Reset `VmHWM` to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
