"""The reliability suite's quorum watch: which samples without quorum it blames on kcp."""

from __future__ import annotations

from typing import Any

import pytest

from kcp.etcd import Member
from kcp.etcd.cluster import EtcdClusterStatus, MemberHealth
from kcp.etcd.model import MemberStatus
from tests.reliability.fleet import QuorumWatch


def _status(member_id: int, *, leader: int) -> MemberStatus:
    return MemberStatus(
        endpoint=f"m{member_id}:2379",
        member_id=member_id,
        leader_id=leader,
        raft_term=2,
        raft_index=10,
        raft_applied_index=10,
        db_size=1,
        db_size_in_use=1,
        db_size_quota=1,
        is_learner=False,
        version="3.6.0",
        errors=(),
    )


def _cluster(*, second_is_learner: bool, second_answers: bool) -> EtcdClusterStatus:
    members = (
        Member(id=1, name="m1", peer_urls=("p1",), client_urls=("c1",)),
        Member(
            id=2, name="m2", peer_urls=("p2",), client_urls=("c2",), is_learner=second_is_learner
        ),
    )
    health = (
        MemberHealth(1, "m1", "c1", True, _status(1, leader=1), (), ()),
        MemberHealth(
            2,
            "m2",
            "c2",
            second_answers,
            _status(2, leader=1) if second_answers else None,
            (),
            () if second_answers else ("no answer within 2s",),
        ),
    )
    return EtcdClusterStatus(leader_id=1, members=members, health=health, alarms=(), errors=())


class _Fleet:
    def __init__(self) -> None:
        self.next: EtcdClusterStatus | None = None

    def etcd_status(self, cluster: str) -> EtcdClusterStatus | None:
        return self.next


def _watch(fleet: _Fleet) -> QuorumWatch:
    fake: Any = fleet
    return QuorumWatch(fake, "c")


def test_a_voter_that_never_was_a_learner_and_does_not_answer_is_a_violation() -> None:
    fleet = _Fleet()
    watch = _watch(fleet)
    fleet.next = _cluster(second_is_learner=False, second_answers=False)
    watch.sample()
    assert len(watch.violations) == 1
    assert watch.joining == []


def test_a_member_just_promoted_from_learner_is_joining_for_the_grace_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("tests.reliability.fleet.time.monotonic", lambda: clock[0])
    fleet = _Fleet()
    watch = _watch(fleet)
    fleet.next = _cluster(second_is_learner=True, second_answers=True)
    watch.sample()
    fleet.next = _cluster(second_is_learner=False, second_answers=False)
    clock[0] += 1.0
    watch.sample()
    assert (len(watch.joining), len(watch.violations)) == (1, 0)
    clock[0] += QuorumWatch.PROMOTION_GRACE
    watch.sample()
    assert (len(watch.joining), len(watch.violations)) == (1, 1)
