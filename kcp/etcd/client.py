"""A client for one etcd endpoint: status, members, alarms, move leader, remove member.

The same calls run over either transport (``kcp.etcd.connection``): etcd's JSON
gateway (``kcp.etcd.gateway``) or gRPC through etcd3's stubs (below).

Every call waits at most the dial timeout for a connection and the call timeout
for the answer, and fails with one of the typed errors of ``kcp.etcd.errors``,
never with a gRPC traceback.

etcd3 0.12's generated messages predate fields that etcd 3.4+ sends
(``errors``, ``isLearner``, ``dbSizeInUse`` ...); protobuf keeps them as unknown
fields, and they are read back here by field number from etcd's ``rpc.proto``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

import etcd3
import grpc

from kcp.etcd.connection import (
    DEFAULT_TRANSPORT,
    Connection,
    EtcdConnection,
    EtcdTLS,
    Transport,
    open_connection,
)
from kcp.etcd.dial import DIRECT, Dialer
from kcp.etcd.errors import EtcdTunnelError, EtcdUnavailable, is_transport_failure, translate
from kcp.etcd.gateway import GatewayCalls, GatewayConnection
from kcp.etcd.model import ALARM_NAMES, Alarm, Member, MemberStatus
from kcp.etcd.pool import ChannelPool
from kcp.etcd.timeouts import EtcdTimeouts

__all__ = [
    "Alarm",
    "EtcdClient",
    "Member",
    "MemberStatus",
    "member_from_message",
    "status_from_response",
]

_unknown_fields: Any = importlib.import_module("google.protobuf.unknown_fields")

# Field numbers in etcd's api/etcdserverpb/rpc.proto that etcd3 0.12 does not know.
_STATUS_RAFT_APPLIED_INDEX = 7
_STATUS_ERRORS = 8
_STATUS_DB_SIZE_IN_USE = 9
_STATUS_IS_LEARNER = 10
_STATUS_DB_SIZE_QUOTA = 12
_MEMBER_IS_LEARNER = 5


def _extra_fields(message: Any) -> dict[int, list[Any]]:
    """Fields of ``message`` its (old) generated class does not know, by field number."""
    found: dict[int, list[Any]] = {}
    for item in _unknown_fields.UnknownFieldSet(message):
        found.setdefault(item.field_number, []).append(item.data)
    return found


def _first_int(fields: dict[int, list[Any]], number: int) -> int:
    values = fields.get(number)
    return int(values[-1]) if values else 0


def status_from_response(endpoint: str, response: Any) -> MemberStatus:
    """A ``MemberStatus`` from etcd's ``StatusResponse``, newer fields included."""
    extra = _extra_fields(response)
    return MemberStatus(
        endpoint=endpoint,
        member_id=int(response.header.member_id),
        leader_id=int(response.leader),
        raft_term=int(response.raftTerm),
        raft_index=int(response.raftIndex),
        raft_applied_index=_first_int(extra, _STATUS_RAFT_APPLIED_INDEX),
        db_size=int(response.dbSize),
        db_size_in_use=_first_int(extra, _STATUS_DB_SIZE_IN_USE),
        db_size_quota=_first_int(extra, _STATUS_DB_SIZE_QUOTA),
        is_learner=bool(_first_int(extra, _STATUS_IS_LEARNER)),
        version=str(response.version),
        errors=tuple(
            bytes(raw).decode("utf-8", "replace") for raw in extra.get(_STATUS_ERRORS, [])
        ),
    )


def member_from_message(message: Any) -> Member:
    """A ``Member`` from etcd's ``Member`` message, ``isLearner`` included."""
    return Member(
        id=int(message.ID),
        name=str(message.name),
        peer_urls=tuple(message.peerURLs),
        client_urls=tuple(message.clientURLs),
        is_learner=bool(_first_int(_extra_fields(message), _MEMBER_IS_LEARNER)),
    )


class _GrpcCalls:
    """The calls ``EtcdClient`` offers, over one gRPC ``Connection`` and etcd3's stubs."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def status(self, timeouts: EtcdTimeouts) -> MemberStatus:
        request = etcd3.etcdrpc.StatusRequest()
        response = self._call("status", lambda e: e.maintenancestub.Status, request, timeouts)
        return status_from_response(self._connection.endpoint, response)

    def members(self, timeouts: EtcdTimeouts) -> list[Member]:
        request = etcd3.etcdrpc.MemberListRequest()
        response = self._call("member list", lambda e: e.clusterstub.MemberList, request, timeouts)
        return [member_from_message(m) for m in response.members]

    def alarms(self, timeouts: EtcdTimeouts) -> list[Alarm]:
        request = etcd3.etcdrpc.AlarmRequest(
            action=etcd3.etcdrpc.AlarmRequest.GET, memberID=0, alarm=etcd3.etcdrpc.NONE
        )
        response = self._call("alarm list", lambda e: e.maintenancestub.Alarm, request, timeouts)
        return [
            Alarm(member_id=int(a.memberID), alarm=ALARM_NAMES.get(int(a.alarm), str(a.alarm)))
            for a in response.alarms
        ]

    def move_leader(self, target_member_id: int, timeouts: EtcdTimeouts) -> None:
        request = etcd3.etcdrpc.MoveLeaderRequest(targetID=target_member_id)
        action = f"move leader to {target_member_id:x}"
        self._call(action, lambda e: e.maintenancestub.MoveLeader, request, timeouts)

    def remove_member(self, member_id: int, timeouts: EtcdTimeouts) -> None:
        request = etcd3.etcdrpc.MemberRemoveRequest(ID=member_id)
        action = f"remove member {member_id:x}"
        self._call(action, lambda e: e.clusterstub.MemberRemove, request, timeouts)

    def _call(
        self, action: str, rpc_of: Callable[[Any], Any], request: Any, timeouts: EtcdTimeouts
    ) -> Any:
        """Dial (bounded by the dial timeout), then call (bounded by the call timeout)."""
        connection = self._connection
        connection.ensure_connected(timeouts.dial)
        try:
            return rpc_of(connection.etcd3)(request, timeout=timeouts.call)
        except grpc.RpcError as exc:
            if is_transport_failure(exc):
                connection.reset()
                problem = connection.tunnel_problem()
                if problem is not None:
                    raise EtcdTunnelError(
                        f"etcd {action} at {connection.endpoint} failed: {problem}",
                        reason="lost",
                        endpoint=connection.endpoint,
                    ) from None
            raise translate(
                exc,
                endpoint=connection.endpoint,
                action=action,
                call_timeout=timeouts.call,
                ca_source=connection.ca_source,
            ) from None
        except ValueError as exc:
            # gRPC refuses calls on a closed channel with a bare ValueError.
            if "closed channel" not in str(exc):
                raise
        raise EtcdUnavailable(
            f"etcd {action} at {connection.endpoint}: the connection was closed meanwhile "
            "(evicted from the channel pool, reset, or closed by its owner); retry",
            endpoint=connection.endpoint,
        )


class EtcdClient:
    """Calls to one etcd endpoint over a mutual-TLS connection of either transport.

    Get one with ``EtcdClient.open``: from a ``ChannelPool`` (the connection is
    shared, of the pool's transport, and ``close()`` leaves it open) or with a
    connection of its own (closed by ``close()``). Creating a client does no
    network I/O; the first call dials.
    """

    def __init__(
        self,
        connection: EtcdConnection,
        *,
        timeouts: EtcdTimeouts | None = None,
        owns_connection: bool = False,
    ) -> None:
        self._connection = connection
        self.timeouts = timeouts or EtcdTimeouts()
        self._owns_connection = owns_connection
        self._calls: _GrpcCalls | GatewayCalls = (
            GatewayCalls(connection)
            if isinstance(connection, GatewayConnection)
            else _GrpcCalls(connection)
        )

    @classmethod
    def open(
        cls,
        endpoint: str,
        tls: EtcdTLS,
        *,
        timeouts: EtcdTimeouts | None = None,
        pool: ChannelPool | None = None,
        transport: Transport = DEFAULT_TRANSPORT,
        dialer: Dialer | None = None,
    ) -> EtcdClient:
        """A client for ``endpoint`` (``host:port``, ``https://host:port``, or a Pod's
        ``namespace/pod:port`` reached through ``dialer``'s port-forward).

        With a ``pool`` the pool's transport is used, else ``transport``. Raises
        ``EtcdTLSError`` at once when the TLS material is unusable (garbage, key
        not matching the certificate, certificate expired).
        """
        if pool is not None:
            connection = pool.get(endpoint, tls, dialer=dialer)
            return cls(connection, timeouts=timeouts or pool.timeouts)
        timeouts = timeouts or EtcdTimeouts()
        connection = open_connection(
            endpoint,
            tls,
            call_timeout=timeouts.call,
            transport=transport,
            dialer=dialer or DIRECT,
            dial_timeout=timeouts.dial,
        )
        return cls(connection, timeouts=timeouts, owns_connection=True)

    def __repr__(self) -> str:
        return f"EtcdClient({self.endpoint!r})"

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        """``host:port`` this client talks to."""
        return self._connection.endpoint

    @property
    def member_name(self) -> str | None:
        """The member this client is meant to reach when its endpoint says so by name (a Pod
        endpoint, whose server certificate must name the member's node), else None."""
        return self._connection.member_name

    @property
    def connection(self) -> EtcdConnection:
        return self._connection

    @property
    def transport(self) -> Transport:
        return "gateway" if isinstance(self._connection, GatewayConnection) else "grpc"

    @property
    def etcd3(self) -> Any:
        """etcd3's client on the same channel, for calls not wrapped here (keys, leases).

        Only on the gRPC transport. Its calls use etcd3's error handling and only
        the call timeout.
        """
        if isinstance(self._connection, GatewayConnection):
            raise TypeError(
                f"{self!r} uses etcd's JSON gateway; etcd3's stubs need transport='grpc'"
            )
        return self._connection.etcd3

    def close(self) -> None:
        """Close the connection if this client owns it; a pooled one stays for reuse."""
        if self._owns_connection:
            self._connection.close()

    # -- calls -------------------------------------------------------------------------

    def status(self) -> MemberStatus:
        """This member's view: its id, the leader it sees, raft progress, database size."""
        return self._calls.status(self.timeouts)

    def members(self) -> list[Member]:
        """The cluster's member list, as this member knows it."""
        return self._calls.members(self.timeouts)

    def alarms(self) -> list[Alarm]:
        """Every active alarm in the cluster (empty when all is well)."""
        return self._calls.alarms(self.timeouts)

    def move_leader(self, target_member_id: int) -> None:
        """Hand leadership to ``target_member_id``; this client's endpoint must be the leader.

        Raises ``EtcdNotLeader`` when it is not (ask the leader's endpoint instead).
        """
        self._calls.move_leader(target_member_id, self.timeouts)

    def remove_member(self, member_id: int) -> None:
        """Remove a member; raises ``EtcdMemberNotFound`` if it is already gone."""
        self._calls.remove_member(member_id, self.timeouts)
