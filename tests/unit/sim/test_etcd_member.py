"""The parts of etcd's membership API the simulator writes on the wire itself."""

from __future__ import annotations

import etcd3

from kcp.sim.etcd_member import _IS_LEARNER, _varint_field


def test_member_promote_request_carries_the_member_id() -> None:
    assert _varint_field(1, 1) == b"\x08\x01"
    assert _varint_field(1, 300) == b"\x08\xac\x02"
    member_id = 0x8E9E05C52164694D
    # MemberPromoteRequest is field 1, uint64, as MemberRemoveRequest's ID: same bytes.
    expected = etcd3.etcdrpc.MemberRemoveRequest(ID=member_id).SerializeToString()
    assert _varint_field(1, member_id) == expected


def test_member_add_request_as_a_learner_keeps_its_peer_urls() -> None:
    request = etcd3.etcdrpc.MemberAddRequest(peerURLs=["https://127.1.2.3:2380"])
    request.MergeFromString(_IS_LEARNER)
    wire = request.SerializeToString()
    assert wire.endswith(b"\x10\x01")
    assert list(etcd3.etcdrpc.MemberAddRequest.FromString(wire).peerURLs) == [
        "https://127.1.2.3:2380"
    ]
