"""Reading fields etcd 3.4+ sends that etcd3 0.12's generated messages do not know."""

from __future__ import annotations

import kcp  # noqa: F401  (protobuf backend for etcd3, before etcd3 loads)

from etcd3 import etcdrpc  # isort: skip

from kcp.etcd.client import member_from_message, status_from_response


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def test_status_reads_errors_learner_and_sizes_from_newer_fields() -> None:
    known = etcdrpc.StatusResponse(version="3.6.4", dbSize=4096, leader=7, raftIndex=42, raftTerm=3)
    known.header.member_id = 7
    wire = (
        known.SerializeToString()
        + _field_varint(7, 41)  # raftAppliedIndex
        + _field_bytes(8, b"memberID:7 alarm:NOSPACE ")  # errors (repeated)
        + _field_bytes(8, b"another problem")
        + _field_varint(9, 2048)  # dbSizeInUse
        + _field_varint(10, 1)  # isLearner
        + _field_varint(12, 1 << 30)  # dbSizeQuota
    )
    status = status_from_response("127.0.0.1:2379", etcdrpc.StatusResponse.FromString(wire))
    assert status.member_id == status.leader_id == 7
    assert status.is_leader
    assert (status.raft_term, status.raft_index, status.raft_applied_index) == (3, 42, 41)
    assert (status.db_size, status.db_size_in_use, status.db_size_quota) == (4096, 2048, 1 << 30)
    assert status.is_learner
    assert status.errors == ("memberID:7 alarm:NOSPACE ", "another problem")


def test_status_of_an_old_server_has_defaults_for_newer_fields() -> None:
    response = etcdrpc.StatusResponse(version="3.3.0", dbSize=1, leader=0)
    status = status_from_response("e:1", response)
    assert not status.has_leader
    assert status.errors == ()
    assert not status.is_learner


def test_member_reads_is_learner() -> None:
    base = etcdrpc.Member(ID=5, name="m-0", peerURLs=["https://p"], clientURLs=["https://c"])
    learner = etcdrpc.Member.FromString(base.SerializeToString() + _field_varint(5, 1))
    assert member_from_message(learner).is_learner
    member = member_from_message(base)
    assert not member.is_learner
    assert (member.id, member.name, member.peer_urls, member.client_urls) == (
        5,
        "m-0",
        ("https://p",),
        ("https://c",),
    )
    assert member.started
