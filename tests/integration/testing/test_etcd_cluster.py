"""The workload etcd helper: real etcd members with mutual TLS from the caller's CA."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kcp.certs import KeyPair, issue_certificate, new_certificate_authority
from kcp.etcd import EtcdClient, EtcdTLS, EtcdTLSError, cluster_status
from kcp.testing import etcd_cluster as etcd_cluster_module
from kcp.testing.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    proc_stat = Path(f"/proc/{pid}/stat")
    return proc_stat.exists() and proc_stat.read_text().split()[2] != "Z"


def _tls(cluster: EtcdCluster, client: KeyPair | None = None) -> EtcdTLS:
    pair = client or cluster.issue_client_certificate()
    return EtcdTLS(ca_pem=cluster.ca_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def other_ca() -> KeyPair:
    return new_certificate_authority("someone-else-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def single(ca: KeyPair) -> Iterator[EtcdCluster]:
    with EtcdCluster(ca, members=1, name="single") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def trio(ca: KeyPair) -> Iterator[EtcdCluster]:
    # One loopback address per member, as simulated machines have.
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    with EtcdCluster(ca, members=3, hosts=hosts, name="trio") as cluster:
        yield cluster


def test_single_member_accepts_a_client_certificate_signed_by_its_ca(single: EtcdCluster) -> None:
    with EtcdClient.open(single.client_urls[0], _tls(single), transport="grpc") as client:
        status = client.status()
        members = client.members()
    assert status.is_leader
    assert [m.name for m in members] == ["single-0"]
    assert members[0].client_urls == (single.client_urls[0],)


def test_member_tls_files_are_private_to_the_instance(single: EtcdCluster) -> None:
    member = single.members[0]
    assert single.dir.name.startswith("kcp-etcd-")
    assert member.tls_dir.is_relative_to(single.dir)
    for key_file in ("server.key", "peer.key"):
        mode = stat.S_IMODE((member.tls_dir / key_file).stat().st_mode)
        assert mode == 0o600


def test_client_certificate_from_another_ca_is_refused(
    single: EtcdCluster, other_ca: KeyPair
) -> None:
    stranger = issue_certificate(
        other_ca, common_name="intruder", usages=("client",), algorithm="ecdsa-p256"
    )
    with (
        EtcdClient.open(single.client_urls[0], _tls(single, stranger), transport="grpc") as client,
        pytest.raises(EtcdTLSError, match="refused our client certificate"),
    ):
        client.status()


def test_server_certificate_from_an_untrusted_ca_is_refused(
    single: EtcdCluster, other_ca: KeyPair
) -> None:
    pair = single.issue_client_certificate()
    tls = EtcdTLS(ca_pem=other_ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)
    with (
        EtcdClient.open(single.client_urls[0], tls, transport="grpc") as client,
        pytest.raises(EtcdTLSError, match="server's certificate is not signed by the etcd CA"),
    ):
        client.status()


def test_three_members_start_with_one_agreed_leader(trio: EtcdCluster) -> None:
    status = cluster_status(trio.client_urls, tls=_tls(trio), transport="grpc")
    assert status.healthy, status
    assert sorted(m.name for m in status.members) == ["trio-0", "trio-1", "trio-2"]
    leader_index = trio.leader_index()
    assert leader_index is not None
    assert status.leader_id == trio.members[leader_index].member_id()
    assert [m.client_url.split(":")[1] for m in trio.members] == [
        "//127.0.0.1",
        "//127.0.0.2",
        "//127.0.0.3",
    ]


def test_killed_member_is_unreachable_while_the_others_keep_a_leader(trio: EtcdCluster) -> None:
    tls = _tls(trio)
    leader_index = trio.leader_index()
    assert leader_index is not None
    victim = (leader_index + 1) % 3  # a follower: the leader and quorum stay
    victim_name = trio.members[victim].name
    trio.kill_member(victim)
    try:
        status = cluster_status(trio.client_urls, tls=tls, transport="grpc")
        down = status.member(victim_name)
        assert down is not None
        assert not down.reachable
        assert not down.healthy
        assert status.leader_id is not None
        alive = [h for h in status.health if h.name != victim_name]
        assert len(alive) == 2
        assert all(h.healthy for h in alive), alive
    finally:
        trio.start_member(victim)
    _wait(
        lambda: cluster_status(trio.client_urls, tls=tls, transport="grpc").healthy,
        20,
        "the cluster to heal",
    )


def test_killing_the_leader_elects_another_and_a_restart_rejoins(trio: EtcdCluster) -> None:
    tls = _tls(trio)
    old = trio.leader_index()
    assert old is not None
    old_id = trio.members[old].member_id()
    trio.kill_member(old)
    try:
        survivors = [m.client_url for i, m in enumerate(trio.members) if i != old]

        def new_leader_agreed() -> bool:
            status = cluster_status(survivors, tls=tls, transport="grpc")
            return status.leader_id not in (None, old_id) and not status.errors

        _wait(new_leader_agreed, 20, "the two survivors to elect a new leader")
    finally:
        trio.start_member(old)
    _wait(
        lambda: cluster_status(trio.client_urls, tls=tls, transport="grpc").healthy,
        20,
        "the cluster to heal",
    )


def test_stop_leaves_no_process_and_no_directory(ca: KeyPair) -> None:
    first = EtcdCluster(ca, members=3, name="short")
    second = EtcdCluster(ca, members=1, name="short")
    with first, second:
        pids = [m.pid for m in first.members + second.members]
        dirs = [first.dir, second.dir]
        assert all(pid is not None and _alive(pid) for pid in pids)
        urls = first.client_urls + second.client_urls
        assert len(set(urls)) == 4
        assert dirs[0] != dirs[1]
    assert not [pid for pid in pids if pid is not None and _alive(pid)]
    assert not [d for d in dirs if d.exists()]


def test_a_start_that_loses_its_port_race_retries_on_fresh_ports(
    ca: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    handed_out: list[int] = []
    real_free_port = etcd_cluster_module.free_port

    def free_port_first_busy(host: str = "127.0.0.1") -> int:
        port = busy if not handed_out else real_free_port(host)
        handed_out.append(port)
        return port

    monkeypatch.setattr(etcd_cluster_module, "free_port", free_port_first_busy)
    try:
        with EtcdCluster(ca, members=1, name="race") as cluster:
            assert cluster.members[0].client_port != busy
            assert handed_out.count(busy) == 1
            assert len(handed_out) == 6  # two attempts of three ports
    finally:
        taken.close()
