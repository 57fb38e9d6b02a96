"""The health of a whole etcd cluster, from asking each of its members.

``cluster_status`` is what the reconciler turns into ``EtcdClusterHealthy`` and
per-machine ``EtcdMemberHealthy``: it asks every endpoint for its status, takes
the member list and alarms from one that answers, and says for each member
whether it is reachable, what it reports wrong, and who leads. It never raises
for an unhealthy cluster; unhealthiness is data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kcp.etcd.client import Alarm, EtcdClient, Member, MemberStatus
from kcp.etcd.connection import DEFAULT_TRANSPORT, EtcdTLS, Transport, normalize_endpoint
from kcp.etcd.errors import EtcdError, EtcdNotLeader, EtcdTunnelError, EtcdUnavailable
from kcp.etcd.pool import ChannelPool
from kcp.etcd.timeouts import EtcdTimeouts

__all__ = ["EtcdClusterStatus", "MemberHealth", "cluster_status", "move_leader"]


@dataclass(frozen=True)
class MemberHealth:
    """One member (or one queried endpoint that matches no listed member)."""

    member_id: int | None
    """None only for an endpoint that never answered and matches no member's client URL."""
    name: str
    endpoint: str | None
    """The endpoint it was asked at; None for a listed member none of the endpoints reaches."""
    reachable: bool
    status: MemberStatus | None
    alarms: tuple[str, ...]
    errors: tuple[str, ...]
    """Why it is not healthy, in words for a condition message; empty when healthy."""

    @property
    def healthy(self) -> bool:
        return self.reachable and not self.errors


@dataclass(frozen=True)
class EtcdClusterStatus:
    """A snapshot of the cluster as its members describe it."""

    leader_id: int | None
    """The leader the reachable members agree on; None if none sees one or they disagree."""
    members: tuple[Member, ...]
    """The member list from the first member that answered (empty if none did)."""
    health: tuple[MemberHealth, ...]
    alarms: tuple[Alarm, ...]
    errors: tuple[str, ...]
    """Cluster-wide problems (no member answers, no leader, split views)."""
    refusals: tuple[str, ...] = ()
    """Members whose port-forward was refused for a reason a user must fix (no such Pod,
    RBAC, credentials): worth an Event, not only a condition."""

    @property
    def healthy(self) -> bool:
        return not self.errors and all(h.healthy for h in self.health)

    @property
    def reachable(self) -> tuple[MemberHealth, ...]:
        return tuple(h for h in self.health if h.reachable)

    def member(self, name: str) -> MemberHealth | None:
        """The health of the member called ``name`` (etcd member name = node name in kubeadm)."""
        return next((h for h in self.health if h.name == name), None)

    def by_id(self, member_id: int) -> MemberHealth | None:
        return next((h for h in self.health if h.member_id == member_id), None)


_USER_FIXABLE = ("not_found", "forbidden", "unauthorized")
"""Tunnel failures that waiting does not cure: no such Pod, RBAC, bad credentials."""


def _client_endpoints(member: Member) -> set[str]:
    found = set()
    for url in member.client_urls:
        try:
            found.add(normalize_endpoint(url))
        except ValueError:
            continue
    return found


def _reaches(client: EtcdClient, member: Member) -> bool:
    """Whether ``client`` is meant to reach ``member``: by client URL, or by name when it goes
    to the member's Pod (its endpoint names no address the member lists)."""
    if client.endpoint in _client_endpoints(member):
        return True
    return bool(member.name) and client.member_name == member.name


def _clients_for(
    targets: Sequence[EtcdClient | str],
    tls: EtcdTLS | None,
    pool: ChannelPool | None,
    timeouts: EtcdTimeouts | None,
    transport: Transport,
) -> tuple[list[EtcdClient], list[EtcdClient]]:
    """Clients for ``targets`` and, of those, the ones opened here (to close afterwards)."""
    clients: list[EtcdClient] = []
    opened: list[EtcdClient] = []
    for target in targets:
        if not isinstance(target, str):
            clients.append(target)
            continue
        if tls is None:
            raise ValueError("cluster_status needs tls= to reach endpoints given as strings")
        client = EtcdClient.open(target, tls, timeouts=timeouts, pool=pool, transport=transport)
        clients.append(client)
        if pool is None:
            opened.append(client)
    return clients, opened


def cluster_status(
    targets: Sequence[EtcdClient | str],
    *,
    tls: EtcdTLS | None = None,
    pool: ChannelPool | None = None,
    timeouts: EtcdTimeouts | None = None,
    transport: Transport = DEFAULT_TRANSPORT,
) -> EtcdClusterStatus:
    """Ask every target (a client, or an endpoint reached with ``tls`` via ``pool``, else
    over ``transport``).

    Members are asked one after another: a silent member costs at most the dial
    timeout, and a refused or TLS-failing one costs nothing.
    """
    clients, opened = _clients_for(targets, tls, pool, timeouts, transport)
    try:
        return _cluster_status(clients)
    finally:
        for client in opened:
            client.close()


def _cluster_status(clients: Sequence[EtcdClient]) -> EtcdClusterStatus:
    statuses: dict[str, MemberStatus] = {}
    failures: dict[str, str] = {}
    members: list[Member] | None = None
    errors: list[str] = []
    member_list_error = ""
    refusals: list[str] = []
    for client in clients:
        try:
            statuses[client.endpoint] = client.status()
        except EtcdError as exc:
            failures[client.endpoint] = str(exc)
            if isinstance(exc, EtcdTunnelError) and exc.reason in _USER_FIXABLE:
                refusals.append(str(exc))
            continue
        if members is None:
            try:
                members = client.members()
            except EtcdError as exc:
                member_list_error = str(exc)
    member_list = tuple(members or ())
    if not statuses:
        errors.append(f"no etcd member answered ({len(clients)} endpoint(s) tried)")
    elif members is None:
        errors.append(f"could not list the etcd members: {member_list_error}")

    leader_id = _agreed_leader(statuses, member_list, errors)
    alarm_list = _alarms(
        clients,
        statuses=statuses,
        failures=failures,
        members=member_list,
        leader_id=leader_id,
        errors=errors,
    )
    health = _member_health(
        clients,
        members=member_list,
        alarms=alarm_list,
        statuses=statuses,
        failures=failures,
        leader_id=leader_id,
    )
    return EtcdClusterStatus(
        leader_id=leader_id,
        members=member_list,
        health=health,
        alarms=alarm_list,
        errors=tuple(errors),
        refusals=tuple(refusals),
    )


def _agreed_leader(
    statuses: dict[str, MemberStatus], members: Sequence[Member], errors: list[str]
) -> int | None:
    """The leader every answering voter follows, else None with the reason in ``errors``."""
    if not statuses:
        return None
    leaders = {s.leader_id for s in statuses.values() if not s.is_learner}
    if not leaders or leaders == {0}:
        errors.append("no etcd member sees a leader (quorum lost?)")
        return None
    if len(leaders) > 1:
        seen = ", ".join(
            f"{ep} follows {s.leader_id:x}" if s.leader_id else f"{ep} sees no leader"
            for ep, s in sorted(statuses.items())
        )
        errors.append(f"etcd members disagree on the leader (election under way?): {seen}")
        return None
    leader_id = next(iter(leaders))
    if members and not any(m.id == leader_id for m in members):
        errors.append(f"the leader {leader_id:x} is not in the member list")
    return leader_id


def _alarms(
    clients: Sequence[EtcdClient],
    *,
    statuses: dict[str, MemberStatus],
    failures: dict[str, str],
    members: Sequence[Member],
    leader_id: int | None,
    errors: list[str],
) -> tuple[Alarm, ...]:
    """The alarm list, asked of the leader itself (the request goes through raft).

    Asked elsewhere while the leader is gone it would block for etcd's own request
    timeout (~7 s); when the leader is not among the endpoints asked, the list is
    left empty and each member's status errors still report its alarms.
    """
    if leader_id is None:
        return ()
    by_endpoint = {c.endpoint: c for c in clients}
    source = next((by_endpoint[ep] for ep, s in statuses.items() if s.member_id == leader_id), None)
    if source is None:
        leader = next((m for m in members if m.id == leader_id), None)
        failed = [c for c in clients if c.endpoint in failures]
        if leader is not None and any(_reaches(c, leader) for c in failed):
            name = f" ({leader.name})" if leader.name else ""
            errors.append(f"the leader {leader_id:x}{name} does not answer")
        return ()
    try:
        return tuple(source.alarms())
    except EtcdError as exc:
        errors.append(f"could not list etcd alarms: {exc}")
        return ()


def _member_health(
    clients: Sequence[EtcdClient],
    *,
    members: Sequence[Member],
    alarms: Sequence[Alarm],
    statuses: dict[str, MemberStatus],
    failures: dict[str, str],
    leader_id: int | None,
) -> tuple[MemberHealth, ...]:
    by_endpoint: dict[str, Member] = {}
    for member in members:
        for endpoint in _client_endpoints(member):
            by_endpoint[endpoint] = member
    by_name = {m.name: m for m in members if m.name}
    by_id = {m.id: m for m in members}
    asked: dict[int, str] = {}
    unmatched: list[MemberHealth] = []
    for client in clients:
        answer = statuses.get(client.endpoint)
        if answer is not None:
            found = by_id.get(answer.member_id)
        else:
            found = by_endpoint.get(client.endpoint) or by_name.get(client.member_name or "")
        if found is not None:
            asked.setdefault(found.id, client.endpoint)
            continue
        problem = failures.get(client.endpoint, "not in the member list")
        unmatched.append(
            MemberHealth(
                member_id=answer.member_id if answer else None,
                name="",
                endpoint=client.endpoint,
                reachable=answer is not None,
                status=answer,
                alarms=(),
                errors=(f"{client.endpoint}: {problem}",),
            )
        )

    health: list[MemberHealth] = []
    for member in members:
        asked_at = asked.get(member.id)
        status = statuses.get(asked_at) if asked_at else None
        # An alarm raised for member 0 (by hand, for everyone) concerns every member.
        member_alarms = tuple(a.alarm for a in alarms if a.member_id in (0, member.id))
        errors: list[str] = []
        if asked_at is None:
            errors.append("not checked: none of the endpoints asked is this member's")
        elif status is None:
            errors.append(failures.get(asked_at, "did not answer"))
        else:
            errors.extend(status.errors)
            if not status.has_leader:
                errors.append("sees no leader")
            elif leader_id is not None and status.leader_id != leader_id:
                errors.append(f"follows {status.leader_id:x}, others follow {leader_id:x}")
        reported = " ".join(status.errors) if status else ""
        errors.extend(f"alarm:{a}" for a in member_alarms if f"alarm:{a}" not in reported)
        if not member.started:
            errors.append("added to the cluster but never started")
        health.append(
            MemberHealth(
                member_id=member.id,
                name=member.name,
                endpoint=asked_at,
                reachable=status is not None,
                status=status,
                alarms=member_alarms,
                errors=tuple(errors),
            )
        )
    return tuple(health + unmatched)


def move_leader(clients: Sequence[EtcdClient], target_member_id: int) -> int:
    """Make ``target_member_id`` the leader, asking whichever client reaches the leader.

    Returns the id of the previous leader (equal to the target when it already led).
    Raises ``EtcdUnavailable`` when no client reaches the leader.
    """
    problems: list[str] = []
    for client in clients:
        try:
            status = client.status()
        except EtcdError as exc:
            problems.append(str(exc))
            continue
        if not status.is_leader:
            continue
        if status.member_id != target_member_id:
            try:
                client.move_leader(target_member_id)
            except EtcdNotLeader as exc:  # leadership moved meanwhile
                problems.append(str(exc))
                continue
        return status.member_id
    detail = "; ".join(problems) or "none of them is the leader"
    raise EtcdUnavailable(
        f"cannot move etcd leadership to {target_member_id:x}: no endpoint reaches the leader "
        f"({detail})"
    )
