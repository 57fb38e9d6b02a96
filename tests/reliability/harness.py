"""`kcp run` as a child process the suite can SIGKILL, freeze, restart and inspect.

Each `KcpProcess` keeps one log file for all its incarnations (what the
security tests scan), collects the private keys and etcd client certificates
its incarnations report over a pipe (see `kcp_child.py`), and notes every exit
it did not cause: a controller that dies on its own fails the suite.

It also records, per incarnation, which way etcd was reached (`EtcdRoutes`):
every TCP peer the process connected to (reported by `kcp_child.py`) and, once
every two seconds from outside (`/proc/<pid>/fd` and `/proc/<pid>/net/tcp`), its open
connections to an etcd client port — none in `port-forward` mode, where etcd is
reached only through tunnels via the workload API servers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcp.bench.procstat import tcp_connections
from kcp.testing.processes import free_port

CHILD = Path(__file__).with_name("kcp_child.py")
REPO = Path(__file__).resolve().parents[2]

_live: set[KcpProcess] = set()
ALL: list[KcpProcess] = []
"""Every controller process the suite started, for the scans at the end."""


@dataclass
class ReportedKey:
    pkcs8_der: bytes = field(repr=False)
    by: str
    process: str


ETCD_CLIENT_PORT = 2379
"""Where every etcd member of the suite (the simulated machines') serves its clients."""
ETCD_ACCESS_ENV = "KCP_RELIABILITY_ETCD_ACCESS"
"""`direct` runs the suite's controllers with `--etcd-access=direct` (to compare timings;
the route check of test_security.py then fails, as it should)."""
ROUTE_SAMPLE_INTERVAL = 2.0
"""Seconds between looks at a controller's sockets (a look reads the kernel's whole TCP
table: tens of milliseconds on a busy machine)."""


@dataclass
class EtcdRoutes:
    """How one incarnation reached etcd: what it connected to and what it held open."""

    incarnation: int
    etcd_access: str
    connects: set[str] = field(default_factory=set)
    """Every TCP `host:port` the process connected to (`socket.connect` in `kcp_child.py`:
    Python's sockets, which the gateway transport, the tunnels and the API clients use)."""
    samples: int = 0
    sampled_from: float = 0.0
    sampled_to: float = 0.0
    """Wall-clock span of the samples of open sockets."""
    etcd_sockets: dict[str, int] = field(default_factory=dict)
    """Open connections to an etcd client port seen in the samples: peer -> samples."""

    @property
    def etcd_connects(self) -> list[str]:
        return sorted(p for p in self.connects if p.endswith(f":{ETCD_CLIENT_PORT}"))

    @property
    def reached_etcd_directly(self) -> bool:
        return bool(self.etcd_connects or self.etcd_sockets)


@dataclass
class Exit:
    incarnation: int
    returncode: int | None
    expected: bool
    tail: str


class KcpProcess:
    """One `kcp run` (through `kcp_child.py`), restartable on the same ports and log."""

    def __init__(
        self,
        name: str,
        *,
        kubeconfig: Path,
        work_dir: Path,
        extra_args: list[str] | None = None,
        tuning: dict[str, Any] | None = None,
        verbosity: int = 1,
        etcd_access: str | None = None,
    ) -> None:
        self.name = name
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args or [])
        self.tuning = tuning
        self.verbosity = verbosity
        self.etcd_access = etcd_access or os.environ.get(ETCD_ACCESS_ENV, "port-forward")
        """`--etcd-access` of the next incarnation (the default: through port-forwards)."""
        self.routes: list[EtcdRoutes] = []
        self.log_path = work_dir / f"{name}.log"
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.keys: list[ReportedKey] = []
        self.etcd_client_certificates: list[str] = []
        self.exits: list[Exit] = []
        self.incarnation = 0
        self.kills = 0
        self.ready_at = 0.0
        self.failpoint_armed = False
        self.failpoint_crashes = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        ALL.append(self)

    def __repr__(self) -> str:
        return f"KcpProcess({self.name!r}, pid={self.pid}, incarnation={self.incarnation})"

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def argv(self) -> list[str]:
        return [
            sys.executable,
            str(CHILD),
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--health-addr=127.0.0.1:{self.health_port}",
            f"--metrics-bind-addr=127.0.0.1:{self.metrics_port}",
            f"--v={self.verbosity}",
            f"--etcd-access={self.etcd_access}",
            *self.extra_args,
        ]

    def start(
        self, *, wait: bool = True, timeout: float = 60.0, crash_after_create: str | None = None
    ) -> None:
        """Start an incarnation; `crash_after_create` arms the failpoint of `kcp_child.py`."""
        self.check_alive()
        if self.running:
            return
        read_end, write_end = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["KCP_RELIABILITY_REPORT_FD"] = str(write_end)
        env["PYTHONUNBUFFERED"] = "1"
        env["KCP_RELIABILITY_PARENT"] = str(os.getpid())
        if self.tuning:
            env["KCP_RELIABILITY_TUNING"] = json.dumps(self.tuning)
        if crash_after_create:
            env["KCP_RELIABILITY_CRASH_AFTER_CREATE"] = crash_after_create
        self.failpoint_armed = crash_after_create is not None
        self.incarnation += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== {self.name} incarnation {self.incarnation} ===\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.work_dir,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        os.close(write_end)
        _live.add(self)
        routes = EtcdRoutes(self.incarnation, self.etcd_access)
        self.routes.append(routes)
        self._reader = threading.Thread(
            target=self._read_reports,
            args=(os.fdopen(read_end, "r", encoding="ascii"), routes),
            name=f"{self.name}-reports",
            daemon=True,
        )
        self._reader.start()
        threading.Thread(
            target=self._sample_routes,
            args=(self._popen, routes),
            name=f"{self.name}-routes",
            daemon=True,
        ).start()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until `/readyz` answered 200 (informers synced)."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.running:
                self.check_alive()
                code = self.exits[-1].returncode if self.exits else None
                raise AssertionError(
                    f"{self.name} exited with {code} while starting:\n{self.tail()}"
                )
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.health_port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        self.ready_at = time.monotonic()
                        return self.ready_at - started
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self.check_alive()
        popen = self._popen
        assert popen is not None and popen.poll() is None, f"{self.name} is not running"
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)
        self.kills += 1
        self._exited(popen, expected=True)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after `timeout`."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGCONT)
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(10)
            self._exited(popen, expected=True)
        else:
            self.check_alive()
        if self._reader is not None:
            self._reader.join(5)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its connections but reads nothing."""
        assert self._popen is not None
        os.killpg(self._popen.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._popen is not None
        os.killpg(self._popen.pid, signal.SIGCONT)

    def check_alive(self) -> None:
        """Record an exit this object did not cause (a crash) once.

        A SIGKILL while the failpoint is armed is the failpoint firing: expected."""
        popen = self._popen
        if popen is not None and popen.poll() is not None:
            fired = self.failpoint_armed and popen.returncode == -signal.SIGKILL
            self.failpoint_crashes += int(fired)
            self._exited(popen, expected=fired)

    def _exited(self, popen: subprocess.Popen[bytes], *, expected: bool) -> None:
        with self._lock:
            if self._popen is not popen:
                return
            self._popen = None
            _live.discard(self)
            self.exits.append(
                Exit(self.incarnation, popen.returncode, expected, "" if expected else self.tail())
            )

    @property
    def crashes(self) -> list[Exit]:
        self.check_alive()
        return [e for e in self.exits if not e.expected]

    # -- what it reports -------------------------------------------------------------------

    def _sample_routes(self, popen: subprocess.Popen[bytes], routes: EtcdRoutes) -> None:
        """Every few seconds while `popen` runs: its open connections to etcd client ports."""
        while popen.poll() is None:
            try:
                peers = tcp_connections(popen.pid, remote_port=ETCD_CLIENT_PORT)
            except OSError:
                return  # exited
            now = time.time()
            routes.sampled_from = routes.sampled_from or now
            routes.sampled_to = now
            routes.samples += 1
            for host, port in peers:
                peer = f"{host}:{port}"
                routes.etcd_sockets[peer] = routes.etcd_sockets.get(peer, 0) + 1
            time.sleep(ROUTE_SAMPLE_INTERVAL)

    def _read_reports(self, pipe: Any, routes: EtcdRoutes) -> None:
        with pipe:
            for line in pipe:
                with contextlib.suppress(ValueError, KeyError):
                    record = json.loads(line)
                    if record["type"] == "key":
                        self.keys.append(
                            ReportedKey(
                                bytes.fromhex(record["pkcs8_der_hex"]), record["by"], self.name
                            )
                        )
                    elif record["type"] == "etcd-client-certificate":
                        self.etcd_client_certificates.append(record["cert_pem"])
                    elif record["type"] == "connect":
                        routes.connects.add(record["peer"])

    # -- observing -------------------------------------------------------------------------

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def metric_samples(self, name: str) -> dict[str, float]:
        """`{labels: value}` of one metric family's samples (labels as written)."""
        found: dict[str, float] = {}
        pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$")
        for line in self.metrics().splitlines():
            match = pattern.match(line)
            if match:
                found[match.group(1) or ""] = float(match.group(2))
        return found

    def proc_status(self) -> dict[str, int]:
        """Threads, open descriptors and RSS (KiB) of the running incarnation, from /proc."""
        pid = self.pid
        assert pid is not None
        status = Path(f"/proc/{pid}/status").read_text()
        values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            "threads": int(values["Threads"].strip()),
            "rss_kib": int(values["VmRSS"].split()[0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "sockets": sum(
                1
                for fd in os.listdir(f"/proc/{pid}/fd")
                if _readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            ),
        }

    def sockets_by_peer(self) -> dict[str, int]:
        """Open TCP sockets of the running incarnation by remote `host:port` ("listen" for
        listeners), from /proc: which server each connection goes to tells a pool filling
        up (the management API server) from a leak (a workload endpoint, an etcd member)."""
        pid = self.pid
        assert pid is not None
        inodes = {
            link[len("socket:[") : -1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if (link := _readlink(f"/proc/{pid}/fd/{fd}")).startswith("socket:[")
        }
        found: dict[str, int] = {}
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 10 or fields[9] not in inodes:
                    continue
                peer = "listen" if fields[3] == "0A" else _tcp_address(fields[2])
                found[peer] = found.get(peer, 0) + 1
        return found

    def python_threads(self) -> list[str]:
        """Names of the running incarnation's Python threads (`py-spy dump`)."""
        pid = self.pid
        assert pid is not None
        dump = subprocess.run(
            [str(Path(sys.executable).with_name("py-spy")), "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return sorted(re.findall(r'^Thread \S+ \([^)]*\): "([^"]*)"', dump.stdout, re.M))


def _tcp_address(hex_address: str) -> str:
    """`0100007F:D8A3` (/proc/net/tcp, IPv4 little-endian) -> `127.0.0.1:55459`."""
    host, port = hex_address.split(":")
    if len(host) == 8:
        octets = [str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0)]
        return f"{'.'.join(octets)}:{int(port, 16)}"
    return f"[{host}]:{int(port, 16)}"


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def stop_all() -> None:
    for process in list(_live):
        with contextlib.suppress(Exception):
            process.stop(timeout=5)


atexit.register(stop_all)
