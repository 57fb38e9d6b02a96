"""Reading etcd's JSON gateway: its documents and its error answers (pure logic)."""

from __future__ import annotations

import json

import pytest

from kcp.etcd import (
    EtcdCallTimeout,
    EtcdError,
    EtcdMemberNotFound,
    EtcdNotLeader,
    EtcdUnavailable,
)
from kcp.etcd.gateway import (
    _decode,
    alarm_from_json,
    member_from_json,
    split_host_port,
    status_from_json,
)

WHERE = "etcd status at 127.0.0.1:2379"


def _decoded(status: int, document: object) -> dict[str, object]:
    body = json.dumps(document).encode()
    return _decode(status, body, path="/v3/x", where=WHERE, endpoint="127.0.0.1:2379")


def test_status_reads_strings_as_integers_and_zero_values_left_out() -> None:
    status = status_from_json(
        "127.0.0.1:2379",
        {
            "header": {"member_id": "17228410731128775094", "raft_term": "2"},
            "version": "3.6.4",
            "dbSize": "28672",
            "leader": "17228410731128775094",
            "raftIndex": "8",
            "raftTerm": "2",
            "raftAppliedIndex": "8",
            "dbSizeInUse": "24576",
            "dbSizeQuota": "268435456",
            "errors": ["memberID:1 alarm:NOSPACE "],
        },
    )
    assert status.member_id == status.leader_id == 17228410731128775094
    assert status.is_leader
    assert (status.raft_term, status.raft_index, status.raft_applied_index) == (2, 8, 8)
    assert (status.db_size, status.db_size_in_use, status.db_size_quota) == (28672, 24576, 1 << 28)
    assert status.errors == ("memberID:1 alarm:NOSPACE ",)
    assert not status.is_learner

    bare = status_from_json("e:1", {"header": {"member_id": "5"}})
    assert (bare.leader_id, bare.has_leader, bare.db_size, bare.version) == (0, False, 0, "")


def test_members_and_alarms() -> None:
    member = member_from_json(
        {"ID": "42", "name": "m-0", "peerURLs": ["https://a:2380"], "clientURLs": []}
    )
    assert (member.id, member.name, member.peer_urls, member.client_urls) == (
        42,
        "m-0",
        ("https://a:2380",),
        (),
    )
    assert member.started
    learner = member_from_json({"ID": "7", "peerURLs": ["https://b:2380"], "isLearner": True})
    assert learner.is_learner
    assert not learner.started
    assert alarm_from_json({"memberID": "7", "alarm": "NOSPACE"}).alarm == "NOSPACE"
    assert alarm_from_json({"memberID": "7", "alarm": 2}).alarm == "CORRUPT"


def test_error_documents_become_typed_errors() -> None:
    not_leader = {
        "error": "etcdserver: not leader",
        "code": 14,
        "message": "etcdserver: not leader",
    }
    with pytest.raises(EtcdNotLeader):
        _decoded(503, not_leader)
    gone = {"code": 5, "message": "etcdserver: member not found"}
    with pytest.raises(EtcdMemberNotFound):
        _decoded(404, gone)
    with pytest.raises(EtcdCallTimeout, match="through raft"):
        _decoded(503, {"code": 14, "message": "etcdserver: request timed out"})
    with pytest.raises(EtcdCallTimeout, match="timed out"):
        _decoded(504, {"code": 4, "message": "context deadline exceeded"})
    with pytest.raises(EtcdUnavailable, match="cannot serve now"):
        _decoded(503, {"code": 14, "message": "connection error"})
    with pytest.raises(EtcdError, match=r"\(PERMISSION_DENIED\)"):
        _decoded(403, {"code": 7, "message": "permission denied"})
    assert _decoded(200, {"header": {}}) == {"header": {}}


def test_a_member_without_the_gateway_says_how_to_fix_it() -> None:
    with pytest.raises(EtcdError, match=r"--enable-grpc-gateway=true.*--etcd-transport=grpc"):
        _decode(404, b"404 page not found\n", path="/v3/x", where=WHERE, endpoint="e:1")
    with pytest.raises(EtcdError, match="not a JSON object"):
        _decode(200, b"[1, 2]", path="/v3/x", where=WHERE, endpoint="e:1")


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert split_host_port("[::1]:2379") == ("::1", 2379)
    assert split_host_port("etcd-0.example:2379") == ("etcd-0.example", 2379)
