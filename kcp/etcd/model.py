"""What etcd says about its members, whichever transport carried the answer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALARM_NAMES", "Alarm", "Member", "MemberStatus"]

ALARM_NAMES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}
"""etcd's ``AlarmType`` values by number."""


@dataclass(frozen=True)
class MemberStatus:
    """What one member says about itself (etcd's ``Status`` RPC)."""

    endpoint: str
    member_id: int
    leader_id: int
    """The leader this member follows; 0 when it sees no leader."""
    raft_term: int
    raft_index: int
    raft_applied_index: int
    db_size: int
    """Bytes of the backend database file."""
    db_size_in_use: int
    db_size_quota: int
    is_learner: bool
    version: str
    errors: tuple[str, ...]
    """Problems the member reports about itself (e.g. ``memberID:... alarm:NOSPACE``)."""

    @property
    def has_leader(self) -> bool:
        return self.leader_id != 0

    @property
    def is_leader(self) -> bool:
        return self.has_leader and self.leader_id == self.member_id


@dataclass(frozen=True)
class Member:
    """One entry of the member list. A member added but not yet started has no name."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @property
    def started(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class Alarm:
    """An active alarm: ``NOSPACE`` (quota reached) or ``CORRUPT`` (data inconsistency)."""

    member_id: int
    alarm: str
