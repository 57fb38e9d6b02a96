"""What the kernel says about a process: peak and current RSS, threads, CPU time.

Read from `/proc/<pid>/status` and `/proc/<pid>/stat`, so a benchmark can watch
a child process without instrumenting it. `VmHWM` is the peak resident set
since the process started (or since `reset_peak`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GRPC_THREAD_PREFIXES",
    "MIB",
    "ProcessSample",
    "Sampler",
    "cpu_seconds",
    "reset_peak",
    "sample",
    "split_threads",
    "status_fields",
    "tcp_connections",
    "thread_names",
]

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


def _tcp_address(hex_address: str) -> tuple[str, int]:
    """`0100007F:D8A3` (/proc/net/tcp{,6}, little-endian words) -> ("127.0.0.1", 55459)."""
    host, port = hex_address.split(":")
    if len(host) == 8:
        return ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)
    words = [host[i : i + 8] for i in range(0, 32, 8)]
    raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":  # an IPv4-mapped address
        return ".".join(str(b) for b in raw[12:]), int(port, 16)
    return ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2)), int(port, 16)


def tcp_connections(
    pid: int | str = "self", *, remote_port: int | None = None
) -> list[tuple[str, int]]:
    """Remote (host, port) of every TCP socket the process holds that is not a listener
    (only those to `remote_port` when given: the other rows are not parsed).

    The process's descriptors name socket inodes (`/proc/<pid>/fd`); the rows of
    `/proc/<pid>/net/tcp` and `tcp6` with those inodes give the peers. Which servers a
    controller is connected to is then visible from outside, without instrumenting it.
    The kernel lists every socket of the network namespace there: on a busy machine a
    read costs tens of milliseconds. Raises OSError when the process is gone.
    """
    wanted = None if remote_port is None else f":{remote_port:04X} "
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes: set[str] = set()
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(fd_dir / fd)
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found: list[tuple[str, int]] = []
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        for row in rows:
            if wanted is not None and wanted not in row:
                continue
            fields = row.split()
            if len(fields) > 9 and fields[9] in inodes and fields[3] != "0A":  # 0A: LISTEN
                peer = _tcp_address(fields[2])
                if remote_port is None or peer[1] == remote_port:
                    found.append(peer)
    return found


def thread_names(pid: int | str = "self") -> dict[str, int]:
    """How many of the process's threads carry each kernel-visible name (`comm`).

    Python threads all show the interpreter's name; native pools (gRPC's) their own.
    """
    names: dict[str, int] = {}
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items()))


GRPC_THREAD_PREFIXES = ("event_engine", "grpc_", "lifeguard", "default-executo", "resolver-execu")
"""Names gRPC's C core gives its own threads (its EventEngine pool grows with I/O load
and never shrinks, and grpcio offers no cap: upstream grpc/grpc#41169)."""


def split_threads(names: dict[str, int]) -> tuple[int, int]:
    """(threads the process started itself, threads of gRPC's core) from `thread_names`."""
    grpc = sum(n for name, n in names.items() if name.startswith(GRPC_THREAD_PREFIXES))
    return sum(names.values()) - grpc, grpc


def reset_peak(pid: int | str = "self") -> bool:
    """Reset `VmHWM` to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler:
    """Samples a process every `interval` seconds on a daemon thread, until `stop()`."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import threading

        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, ProcessSample]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import time

        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), sample(self.pid)))
            except (OSError, ValueError, KeyError):
                return  # the process is gone
            self._stop.wait(self.interval)

    def now(self) -> ProcessSample:
        return sample(self.pid)

    def max_threads(self, since: float = 0.0) -> int:
        return max((s.threads for t, s in self.samples if t >= since), default=0)

    def median_threads(self, since: float = 0.0) -> int:
        counts = sorted(s.threads for t, s in self.samples if t >= since)
        return counts[len(counts) // 2] if counts else 0
