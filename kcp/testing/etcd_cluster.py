"""A real etcd cluster of 1 or 3 members with mutual TLS, on loopback, for tests.

It plays the part kubeadm plays on a control-plane node: each member gets a
server and a peer certificate signed by the etcd CA the caller passes in, written
to the member's own temporary directory (this is test infrastructure; the product
never writes key material to disk). Ports come from `free_port` and every
instance has its own `kcp-etcd-*` directory, so two test runs on one machine
never share anything; a start that loses a port race is retried on fresh ports.

Readiness is judged over each member's plain-HTTP metrics listener (`/health`
is true only when the member sees a leader and can serve a linearizable read),
so this module needs no etcd client and imports nothing of kcp but `kcp.certs`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kcp.certs import KeyAlgorithm, KeyPair, Usage, encode_certificate, issue_certificate
from kcp.testing import binaries
from kcp.testing.etcd_launch import EtcdTuning, MemberURLs, TLSFiles, etcd_argv
from kcp.testing.processes import ManagedProcess, ProcessError, free_port

__all__ = ["EtcdCluster", "EtcdMember"]

_START_ATTEMPTS = 3
"""Whole-cluster start attempts when a member loses a race for its port."""
_PORT_TAKEN = re.compile(r"address already in use", re.IGNORECASE)
_HTTP_TIMEOUT = 1.0
_TUNING = EtcdTuning(snapshot_count=5000)


@dataclass
class EtcdMember(MemberURLs):
    """One member: its addresses, its directory and (once started) its process."""

    name: str
    host: str
    dir: Path
    client_port: int = 0
    peer_port: int = 0
    metrics_port: int = 0
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def log_path(self) -> Path:
        return self.dir / "etcd.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def healthy(self) -> bool:
        """Whether the member answers ``/health`` with true (it has a leader, reads work)."""
        body = _http_get(f"{self.metrics_url}/health")
        return body is not None and b'"health":"true"' in body.replace(b" ", b"")

    def is_leader(self) -> bool:
        """Whether this member is the raft leader now, from its own metrics."""
        body = _http_get(f"{self.metrics_url}/metrics")
        return body is not None and re.search(rb"^etcd_server_is_leader 1$", body, re.M) is not None

    def member_id(self) -> int | None:
        """The member's raft id as etcd reports it in its metrics, or None if unreachable."""
        body = _http_get(f"{self.metrics_url}/metrics")
        match = re.search(rb'^etcd_server_id\{server_id="([0-9a-f]+)"\} 1$', body or b"", re.M)
        return int(match.group(1), 16) if match else None


def _http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except OSError:
        return None


class EtcdCluster:
    """Real etcd members with mutual TLS whose certificates ``ca`` signed.

    ``start()`` returns when every member is healthy and a leader is elected;
    ``stop()`` (or leaving the ``with`` block) stops every member and removes the
    instance's directory. ``stop_member``/``kill_member``/``start_member`` act on
    one member, the last one restarting it from its data directory.
    """

    def __init__(
        self,
        ca: KeyPair,
        *,
        members: int = 1,
        host: str = "127.0.0.1",
        hosts: Sequence[str] | None = None,
        name: str = "etcd",
        work_dir: Path | None = None,
        key_algorithm: KeyAlgorithm = "ecdsa-p256",
        etcd_binary: Path | None = None,
    ) -> None:
        """``members`` is usually 1 or 3 (what the tests exercise); ``hosts`` gives each
        member its own loopback address (127.x.y.z), default all on ``host``."""
        if members < 1:
            raise ValueError(f"an etcd cluster has at least one member, not {members}")
        if hosts is not None and len(hosts) != members:
            raise ValueError(f"hosts names {len(hosts)} addresses for {members} members")
        if not ca.is_ca:
            raise ValueError(f"{ca.subject} is not a CA; pass the cluster's etcd CA key pair")
        self.ca = ca
        self.name = name
        self.key_algorithm = key_algorithm
        self._work_parent = work_dir
        self._hosts = list(hosts) if hosts is not None else [host] * members
        self._etcd_binary = etcd_binary
        self._dir: Path | None = None
        self.members: list[EtcdMember] = []

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def dir(self) -> Path:
        """The instance's own directory (member data, TLS files, logs)."""
        if self._dir is None:
            raise RuntimeError("the etcd cluster is not started")
        return self._dir

    @property
    def ca_pem(self) -> bytes:
        return encode_certificate(self.ca.certificate)

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` of every member's client URL."""
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 60.0) -> None:
        """Start every member and wait until all are healthy with one leader."""
        if self._dir is not None:
            raise RuntimeError("the etcd cluster is already started")
        etcd = self._etcd_binary or binaries.ensure(progress=False).etcd
        if self._work_parent is not None:
            self._work_parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="kcp-etcd-", dir=self._work_parent))
        try:
            self._create_members()
            deadline = time.monotonic() + timeout
            for attempt in range(1, _START_ATTEMPTS + 1):
                self._assign_ports()
                token = f"{self.name}-{uuid.uuid4().hex[:12]}"
                for member in self.members:
                    self._launch(etcd, member, state="new", token=token)
                try:
                    self._wait_healthy(self.members, deadline - time.monotonic())
                    return
                except ProcessError:
                    logs = [m.process.log_tail(50) for m in self.members if m.process]
                    lost_port_race = any(_PORT_TAKEN.search(log) for log in logs)
                    if not lost_port_race or attempt == _START_ATTEMPTS:
                        raise
                    self._reset_members()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every member and remove the instance's directory.

        SIGKILL rather than a graceful stop: the data is deleted right after, and a
        graceful stop of a multi-member cluster hands leadership around for seconds.
        """
        for member in self.members:
            if member.process is not None:
                member.process.kill()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.members = []

    def stop_member(self, index: int, timeout: float = 10.0) -> None:
        """Stop one member gracefully (SIGTERM); its data directory stays for a restart."""
        process = self.members[index].process
        if process is not None:
            process.stop(timeout=timeout)

    def kill_member(self, index: int) -> None:
        """SIGKILL one member, as a crash would; its data directory stays for a restart."""
        process = self.members[index].process
        if process is not None:
            process.kill()

    def start_member(self, index: int, timeout: float = 60.0) -> None:
        """Restart a stopped or killed member from its data directory and wait until healthy."""
        member = self.members[index]
        if member.running:
            return
        etcd = self._etcd_binary or binaries.ensure(progress=False).etcd
        self._launch(etcd, member, state="existing", token=None)
        self._wait_healthy([member], timeout)

    # -- inspection --------------------------------------------------------------------

    def leader_index(self) -> int | None:
        """Index of the member that says it is the leader, or None."""
        for i, member in enumerate(self.members):
            if member.running and member.is_leader():
                return i
        return None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running member is healthy (sees a leader, serves reads)."""
        self._wait_healthy([m for m in self.members if m.running], timeout)

    def issue_client_certificate(self, common_name: str = "kcp-etcd-client") -> KeyPair:
        """A client certificate signed by the cluster's CA (what the product would present)."""
        usages: tuple[Usage, ...] = ("client",)
        return issue_certificate(
            self.ca, common_name=common_name, usages=usages, algorithm=self.key_algorithm
        )

    # -- internals ---------------------------------------------------------------------

    def _create_members(self) -> None:
        self.members = []
        for i, host in enumerate(self._hosts):
            name = f"{self.name}-{i}"
            member = EtcdMember(name=name, host=host, dir=self.dir / name)
            member.tls_dir.mkdir(parents=True, mode=0o700)
            self._write_tls(member)
            self.members.append(member)

    def _write_tls(self, member: EtcdMember) -> None:
        server_usages: tuple[Usage, ...] = ("server", "client")
        peer_usages: tuple[Usage, ...] = ("peer",)
        server, peer = (
            issue_certificate(
                self.ca,
                common_name=member.name,
                usages=usages,
                dns_names=("localhost", member.name),
                ip_addresses=(member.host,),
                algorithm=self.key_algorithm,
            )
            for usages in (server_usages, peer_usages)
        )
        files = {
            "ca.crt": self.ca_pem,
            "server.crt": server.cert_pem,
            "server.key": server.key_pem,
            "peer.crt": peer.cert_pem,
            "peer.key": peer.key_pem,
        }
        for file_name, data in files.items():
            path = member.tls_dir / file_name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)

    def _assign_ports(self) -> None:
        taken: set[tuple[str, int]] = set()
        for member in self.members:
            ports: list[int] = []
            while len(ports) < 3:
                port = free_port(member.host)
                if (member.host, port) not in taken:
                    taken.add((member.host, port))
                    ports.append(port)
            member.client_port, member.peer_port, member.metrics_port = ports

    def _reset_members(self) -> None:
        for member in self.members:
            if member.process is not None:
                member.process.kill()
                member.process = None
            shutil.rmtree(member.data_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                member.log_path.unlink()

    def _launch(self, etcd: Path, member: EtcdMember, *, state: str, token: str | None) -> None:
        tls = member.tls_dir
        argv = etcd_argv(
            etcd,
            name=member.name,
            data_dir=member.data_dir,
            client_url=member.client_url,
            peer_url=member.peer_url,
            metrics_url=member.metrics_url,
            initial_cluster=",".join(f"{m.name}={m.peer_url}" for m in self.members),
            state=state,
            token=token,
            client_tls=TLSFiles(tls / "ca.crt", tls / "server.crt", tls / "server.key"),
            peer_tls=TLSFiles(tls / "ca.crt", tls / "peer.crt", tls / "peer.key"),
            tuning=_TUNING,
        )
        member.process = ManagedProcess(member.name, argv, log_path=member.log_path)
        member.process.start()

    def _wait_healthy(self, members: Sequence[EtcdMember], timeout: float) -> None:
        """Wait until ``members`` are healthy and one member leads; fail fast if one exits."""
        deadline = time.monotonic() + max(timeout, 1.0)
        pending = list(members)
        while True:
            for member in members:
                if member.process is not None and not member.process.running:
                    raise ProcessError(
                        f"etcd member {member.name} exited with {member.process.returncode} "
                        f"while starting:\n{member.process.log_tail()}"
                    )
            pending = [m for m in pending if not m.healthy()]
            if not pending and self.leader_index() is not None:
                return
            if time.monotonic() > deadline:
                waiting = ", ".join(m.name for m in pending) or "a leader"
                tails = "\n".join(
                    f"--- {m.name}:\n{m.process.log_tail(15)}" for m in pending if m.process
                )
                raise ProcessError(
                    f"timed out after {timeout:.0f}s waiting for etcd cluster {self.name} "
                    f"({waiting})\n{tails}"
                )
            time.sleep(0.1)
