"""How member answers combine into a cluster status (leader agreement, health, alarms).

The members here are stand-ins answering as etcd would; the real thing is
exercised in tests/integration/etcd.
"""

from __future__ import annotations

from typing import Any, cast

from kcp.etcd import (
    Alarm,
    EtcdClient,
    EtcdTunnelError,
    EtcdUnavailable,
    Member,
    MemberStatus,
    cluster_status,
)


class _Member:
    def __init__(
        self,
        endpoint: str,
        member_id: int,
        leader_id: int,
        *,
        members: list[Member],
        alarms: list[Alarm] | None = None,
        errors: tuple[str, ...] = (),
        down: bool = False,
        member_name: str | None = None,
        refused: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.member_name = member_name
        self._refused = refused
        self._id = member_id
        self._leader = leader_id
        self._members = members
        self._alarms = alarms or []
        self._errors = errors
        self._down = down
        self.alarm_calls = 0

    def _check(self) -> None:
        if self._refused:
            raise EtcdTunnelError(
                f"port-forward to Pod {self.endpoint} failed", reason=self._refused
            )
        if self._down:
            raise EtcdUnavailable(f"etcd status at {self.endpoint} failed: unreachable")

    def status(self) -> MemberStatus:
        self._check()
        return MemberStatus(
            endpoint=self.endpoint,
            member_id=self._id,
            leader_id=self._leader,
            raft_term=2,
            raft_index=10,
            raft_applied_index=10,
            db_size=1,
            db_size_in_use=1,
            db_size_quota=1,
            is_learner=False,
            version="3.6.4",
            errors=self._errors,
        )

    def members(self) -> list[Member]:
        self._check()
        return self._members

    def alarms(self) -> list[Alarm]:
        self._check()
        self.alarm_calls += 1
        return self._alarms


MEMBERS = [
    Member(id=i, name=f"m-{i}", peer_urls=(f"https://h:{i}0",), client_urls=(f"https://h:{i}",))
    for i in (1, 2, 3)
]


def _clients(*members: _Member) -> list[EtcdClient]:
    return cast(list[EtcdClient], list(members))


def _trio(leaders: tuple[int, int, int], **overrides: Any) -> list[_Member]:
    return [
        _Member(f"h:{i}", i, leaders[i - 1], members=MEMBERS, **overrides.get(str(i), {}))
        for i in (1, 2, 3)
    ]


def test_agreement_on_a_leader_is_healthy() -> None:
    status = cluster_status(_clients(*_trio((2, 2, 2))))
    assert status.healthy
    assert status.leader_id == 2
    assert [h.name for h in status.health] == ["m-1", "m-2", "m-3"]
    assert [h.endpoint for h in status.health] == ["h:1", "h:2", "h:3"]


def test_members_disagreeing_on_the_leader_is_reported() -> None:
    status = cluster_status(_clients(*_trio((2, 3, 3))))
    assert status.leader_id is None
    assert any("disagree" in e for e in status.errors)
    assert not status.healthy


def test_no_leader_anywhere_is_reported() -> None:
    status = cluster_status(_clients(*_trio((0, 0, 0))))
    assert status.leader_id is None
    assert any("no etcd member sees a leader" in e for e in status.errors)
    assert all("sees no leader" in h.errors for h in status.health)


def test_an_unreachable_member_is_marked_by_name() -> None:
    members = _trio((1, 1, 1), **{"3": {"down": True}})
    status = cluster_status(_clients(*members))
    down = status.member("m-3")
    assert down is not None
    assert not down.reachable
    assert "unreachable" in down.errors[0]
    assert status.errors == ()
    assert [h.healthy for h in status.health] == [True, True, False]


def test_an_unreachable_leader_is_a_cluster_error_and_alarms_are_not_asked() -> None:
    members = _trio((1, 1, 1), **{"1": {"down": True}})
    status = cluster_status(_clients(*members))
    assert any("leader 1 (m-1) does not answer" in e for e in status.errors)
    assert members[1].alarm_calls == members[2].alarm_calls == 0


def test_alarms_are_asked_of_the_leader_and_attached_to_members() -> None:
    alarms = [Alarm(member_id=3, alarm="NOSPACE"), Alarm(member_id=0, alarm="CORRUPT")]
    members = _trio((2, 2, 2), **{"2": {"alarms": alarms}})
    status = cluster_status(_clients(*members))
    assert members[1].alarm_calls == 1
    assert members[0].alarm_calls == members[2].alarm_calls == 0
    by_name = {h.name: h for h in status.health}
    assert by_name["m-3"].alarms == ("NOSPACE", "CORRUPT")
    assert by_name["m-1"].alarms == ("CORRUPT",)
    assert "alarm:NOSPACE" in by_name["m-3"].errors
    assert not status.healthy


def test_nothing_reachable() -> None:
    status = cluster_status(_clients(*_trio((1, 1, 1), **{k: {"down": True} for k in "123"})))
    assert status.members == ()
    assert status.leader_id is None
    assert status.errors == ("no etcd member answered (3 endpoint(s) tried)",)
    assert all(not h.reachable for h in status.health)


def test_an_endpoint_that_is_no_member_is_reported_separately() -> None:
    stray = _Member("h:9", 9, 1, members=MEMBERS)
    status = cluster_status(_clients(*_trio((1, 1, 1)), stray))
    extra = [h for h in status.health if h.endpoint == "h:9"]
    assert len(extra) == 1
    assert extra[0].member_id == 9
    assert not extra[0].healthy


def _pods(leaders: tuple[int, int, int], **overrides: Any) -> list[_Member]:
    """Members reached at their Pods (kube-system/etcd-m-N:2379), not at their client URLs."""
    return [
        _Member(
            f"kube-system/etcd-m-{i}:2379",
            i,
            leaders[i - 1],
            members=MEMBERS,
            member_name=f"m-{i}",
            **overrides.get(str(i), {}),
        )
        for i in (1, 2, 3)
    ]


def test_a_silent_member_asked_at_its_pod_is_named_by_its_member_name() -> None:
    status = cluster_status(_clients(*_pods((1, 1, 1), **{"3": {"down": True}})))
    down = status.member("m-3")
    assert down is not None
    assert down.endpoint == "kube-system/etcd-m-3:2379"
    assert not down.reachable
    assert "unreachable" in down.errors[0]
    assert [h.name for h in status.health] == ["m-1", "m-2", "m-3"]


def test_a_silent_leader_asked_at_its_pod_is_named() -> None:
    status = cluster_status(_clients(*_pods((1, 1, 1), **{"1": {"down": True}})))
    assert any("leader 1 (m-1) does not answer" in e for e in status.errors)


def test_refused_port_forwards_are_reported_for_an_event() -> None:
    """No such Pod or RBAC: the user must act; a member not listening yet is only a condition."""
    members = _pods((1, 1, 1), **{"2": {"refused": "forbidden"}, "3": {"refused": "port"}})
    status = cluster_status(_clients(*members))
    assert status.refusals == ("port-forward to Pod kube-system/etcd-m-2:2379 failed",)
    assert not status.healthy
    assert cluster_status(_clients(*_pods((1, 1, 1)))).refusals == ()
