"""One machine's etcd member, as kubeadm runs it: mutual TLS on the machine's own address.

The first machine of a cluster starts a new etcd cluster; every later one is
first added to the membership through a running member as a learner (MemberAdd
over mutual TLS, with the machine's own API server etcd client certificate,
issued from the etcd CA in its bootstrap data), then started with
`--initial-cluster-state existing` and promoted to a voting member once it has
caught up: the `kubeadm join --control-plane` sequence since kubeadm's
`EtcdLearnerMode` (on by default from v1.29). Health is read from the plain-HTTP
metrics listener (`/health` is true once the member sees a leader).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import etcd3
import grpc

from kcp.etcd import Connection, EtcdClient, EtcdError, EtcdTimeouts, EtcdTLS, Member, Transport
from kcp.sim.pki import MachineFiles
from kcp.sim.process import SimProcess
from kcp.testing.etcd_launch import EtcdTuning, MemberURLs, TLSFiles, etcd_argv

__all__ = [
    "CLIENT_PORT",
    "METRICS_PORT",
    "PEER_PORT",
    "EtcdJoinError",
    "EtcdMember",
    "JoinPlan",
    "add_member",
    "list_members",
    "promote_member",
    "remove_member",
]

CLIENT_PORT = 2379
PEER_PORT = 2380
METRICS_PORT = 2381
_HEALTH_TIMEOUT = 1.0
_TIMEOUTS = EtcdTimeouts(dial=2.0, call=5.0)
_SERVES_TIMEOUTS = EtcdTimeouts(dial=1.0, call=1.0)
"""A member that is starting holds a call until it serves: asked again every 0.2 s, a
long call timeout only made each join wait out the first one (7 s in a --quick run)."""
_TRANSPORT: Transport = "grpc"
"""Membership changes go through etcd3's stubs (MemberAdd), so the simulator speaks gRPC."""
_TUNING = EtcdTuning(snapshot_count=10000)


class EtcdJoinError(RuntimeError):
    """The member could not be added to (or removed from) the cluster's membership."""


@dataclass(frozen=True)
class JoinPlan:
    """What a joining member is started with: its id and the cluster as MemberAdd returned it."""

    member_id: int
    initial_cluster: str


class EtcdMember(MemberURLs):
    """The etcd process of one machine and the flags kubeadm would give it."""

    # kubeadm's ports: every machine has an address of its own.
    client_port = CLIENT_PORT
    peer_port = PEER_PORT
    metrics_port = METRICS_PORT

    def __init__(
        self,
        *,
        name: str,
        address: str,
        data_dir: Path,
        files: MachineFiles,
        process: SimProcess,
        binary: Path,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.host = address
        self.data_dir = data_dir
        self.files = files
        self.process = process
        self.binary = binary
        self.extra_args = tuple(extra_args)
        """`etcd.local.extraArgs` (last, so they win over the simulator's tuning)."""
        self.member_id: int | None = None

    def start_new(self, token: str) -> None:
        """Start as the only member of a new cluster."""
        self.process.start(self._argv(f"{self.name}={self.peer_url}", state="new", token=token))

    def start_join(self, plan: JoinPlan) -> None:
        """Start as a member MemberAdd has just added (`--initial-cluster-state existing`)."""
        self.member_id = plan.member_id
        self.process.start(self._argv(plan.initial_cluster, state="existing", token=None))

    def restart(self) -> None:
        """Start again from the data directory (the membership is in it)."""
        self.process.start(self._argv(f"{self.name}={self.peer_url}", state="existing", token=None))

    def healthy(self) -> bool:
        """Whether `/health` says true: the member runs, sees a leader and serves reads."""
        if not self.process.running or self.process.frozen:
            return False
        try:
            with urllib.request.urlopen(  # noqa: S310 - a fixed http:// URL on loopback
                f"{self.metrics_url}/health", timeout=_HEALTH_TIMEOUT
            ) as response:
                body: bytes = response.read()
        except OSError:
            return False
        return b'"health":"true"' in body.replace(b" ", b"")

    def serves(self, tls: EtcdTLS, *, as_learner: bool) -> bool:
        """Whether the member answers `Status` on its own client port over mutual TLS, sees
        a leader and is (or is no longer) a learner: a learner promoted before it serves
        would be a voter nobody can reach, a quorum lost for as long as it takes."""
        if not self.process.running or self.process.frozen:
            return False
        try:
            with EtcdClient.open(
                self.endpoint, tls, timeouts=_SERVES_TIMEOUTS, transport=_TRANSPORT
            ) as client:
                status = client.status()
        except EtcdError:
            return False
        return status.has_leader and status.is_learner == as_learner

    def _argv(self, initial_cluster: str, *, state: str, token: str | None) -> list[str]:
        files = self.files
        argv = etcd_argv(
            self.binary,
            name=self.name,
            data_dir=self.data_dir,
            client_url=self.client_url,
            peer_url=self.peer_url,
            metrics_url=self.metrics_url,
            initial_cluster=initial_cluster,
            state=state,
            token=token,
            client_tls=TLSFiles(files.etcd_ca_crt, files.etcd_server_crt, files.etcd_server_key),
            peer_tls=TLSFiles(files.etcd_ca_crt, files.etcd_peer_crt, files.etcd_peer_key),
            tuning=_TUNING,
        )
        return [*argv, *self.extra_args]


def list_members(endpoints: Sequence[str], tls: EtcdTLS) -> list[Member]:
    """The member list from the first of `endpoints` that answers."""
    errors: list[str] = []
    for endpoint in endpoints:
        try:
            with EtcdClient.open(endpoint, tls, timeouts=_TIMEOUTS, transport=_TRANSPORT) as client:
                return client.members()
        except EtcdError as error:
            errors.append(str(error))
    raise EtcdJoinError(f"no etcd member answered the member list: {'; '.join(errors)}")


def add_member(
    endpoints: Sequence[str], tls: EtcdTLS, name: str, peer_url: str, *, learner: bool = False
) -> JoinPlan:
    """MemberAdd `peer_url` through the first endpoint that accepts it (as a learner: a
    non-voting member until `promote_member`, as `kubeadm join` adds it since v1.29).

    A member already listed with `peer_url` (an earlier attempt that failed
    after the add) is reused rather than added twice.
    """
    errors: list[str] = []
    for endpoint in endpoints:
        try:
            # MemberAdd is not wrapped by EtcdClient: it goes through etcd3's stub.
            with EtcdClient.open(endpoint, tls, timeouts=_TIMEOUTS, transport=_TRANSPORT) as client:
                members = client.members()
                existing = next((m for m in members if peer_url in m.peer_urls), None)
                if existing is not None:
                    return JoinPlan(existing.id, _initial_cluster(members, existing.id, name))
                assert isinstance(client.connection, Connection)
                client.connection.ensure_connected(_TIMEOUTS.dial)
                request = etcd3.etcdrpc.MemberAddRequest(peerURLs=[peer_url])
                if learner:
                    # isLearner (field 2) is newer than etcd3's protos: set it on the wire.
                    request.MergeFromString(_IS_LEARNER)
                response = client.etcd3.clusterstub.MemberAdd(request, timeout=_TIMEOUTS.call)
        except EtcdError as error:
            errors.append(str(error))
            continue
        except grpc.RpcError as error:
            errors.append(f"MemberAdd via {endpoint}: {error.code().name}: {error.details()}")
            continue
        member_id = int(response.member.ID)
        listed = [
            Member(id=int(m.ID), name=str(m.name), peer_urls=tuple(m.peerURLs), client_urls=())
            for m in response.members
        ]
        return JoinPlan(member_id, _initial_cluster(listed, member_id, name))
    raise EtcdJoinError(f"could not add etcd member {name} ({peer_url}): {'; '.join(errors)}")


def promote_member(endpoints: Sequence[str], tls: EtcdTLS, member_id: int) -> bool:
    """MemberPromote a learner: True once it votes (or already did), False while etcd says
    it has not caught up with the leader yet; EtcdJoinError if no endpoint could say."""
    errors: list[str] = []
    request = _varint_field(1, member_id)  # MemberPromoteRequest.ID, not in etcd3's protos
    for endpoint in endpoints:
        try:
            with EtcdClient.open(endpoint, tls, timeouts=_TIMEOUTS, transport=_TRANSPORT) as client:
                assert isinstance(client.connection, Connection)
                client.connection.ensure_connected(_TIMEOUTS.dial)
                promote = client.etcd3.channel.unary_unary(_MEMBER_PROMOTE)
                promote(request, timeout=_TIMEOUTS.call)
                return True
        except EtcdError as error:
            errors.append(str(error))
        except grpc.RpcError as error:
            details = str(error.details() or "")
            if "in sync with leader" in details:
                return False
            if "can only promote a learner member" in details:
                return True  # a voting member already
            errors.append(f"MemberPromote via {endpoint}: {error.code().name}: {details}")
    raise EtcdJoinError(f"could not promote etcd member {member_id:x}: {'; '.join(errors)}")


_IS_LEARNER = b"\x10\x01"
_MEMBER_PROMOTE = "/etcdserverpb.Cluster/MemberPromote"


def _varint_field(number: int, value: int) -> bytes:
    """A protobuf varint field on the wire: its key (wire type 0), then the value."""
    out = bytearray([number << 3])
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def remove_member(endpoints: Sequence[str], tls: EtcdTLS, member_id: int) -> None:
    """Remove a member (a failed join's rollback); gone already counts as done."""
    errors: list[str] = []
    for endpoint in endpoints:
        try:
            with EtcdClient.open(endpoint, tls, timeouts=_TIMEOUTS, transport=_TRANSPORT) as client:
                if all(m.id != member_id for m in client.members()):
                    return
                client.remove_member(member_id)
                return
        except EtcdError as error:
            errors.append(str(error))
    raise EtcdJoinError(f"could not remove etcd member {member_id:x}: {'; '.join(errors)}")


def _initial_cluster(members: Sequence[Member], new_id: int, new_name: str) -> str:
    """`--initial-cluster` for a joiner: every started member, plus itself under its name."""
    parts: list[str] = []
    for member in members:
        name = new_name if member.id == new_id else member.name
        if not name:
            continue  # added elsewhere and not started yet; etcd would refuse it anyway
        parts.extend(f"{name}={url}" for url in member.peer_urls)
    return ",".join(parts)
