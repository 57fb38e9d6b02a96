"""Workload etcd access against a real 3-member etcd with mutual TLS, over both
transports (etcd's JSON gateway and gRPC)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kcp.certs import KeyPair, new_certificate_authority
from kcp.etcd import (
    TRANSPORTS,
    ChannelPool,
    EtcdCallTimeout,
    EtcdClient,
    EtcdMemberNotFound,
    EtcdNotLeader,
    EtcdTimeouts,
    EtcdTLS,
    EtcdTLSError,
    EtcdUnavailable,
    GatewayConnection,
    Transport,
    cluster_status,
    move_leader,
)
from kcp.testing.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.integration


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _tls(cluster: EtcdCluster, *, server_name: str | None = None) -> EtcdTLS:
    pair = cluster.issue_client_certificate()
    return EtcdTLS(cluster.ca_pem, pair.cert_pem, pair.key_pem, server_name=server_name)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


@pytest.fixture(scope="module")
def trio(ca: KeyPair) -> Iterator[EtcdCluster]:
    with EtcdCluster(ca, members=3, name="m") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def tls(trio: EtcdCluster) -> EtcdTLS:
    return _tls(trio)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    chosen: Transport = request.param
    return chosen


@pytest.fixture
def pool(transport: Transport) -> Iterator[ChannelPool]:
    pool = ChannelPool(timeouts=EtcdTimeouts(dial=5, call=5), transport=transport)
    yield pool
    pool.close_all()


def _leader_index(clients: list[EtcdClient]) -> int:
    for i, client in enumerate(clients):
        if client.status().is_leader:
            return i
    raise AssertionError("no member says it leads")


def test_members_lists_every_member_with_its_urls(
    trio: EtcdCluster, tls: EtcdTLS, transport: Transport
) -> None:
    with EtcdClient.open(trio.client_urls[1], tls, transport=transport) as client:
        members = client.members()
    by_name = {m.name: m for m in members}
    assert sorted(by_name) == ["m-0", "m-1", "m-2"]
    for member in trio.members:
        listed = by_name[member.name]
        assert listed.client_urls == (member.client_url,)
        assert listed.peer_urls == (member.peer_url,)
        assert listed.id == member.member_id()
        assert not listed.is_learner


def test_status_reports_member_leader_raft_and_database(
    trio: EtcdCluster, tls: EtcdTLS, transport: Transport
) -> None:
    with EtcdClient.open(trio.client_urls[0], tls, transport=transport) as client:
        status = client.status()
    assert status.member_id == trio.members[0].member_id()
    assert status.has_leader
    assert status.raft_term >= 1
    assert status.raft_index >= status.raft_applied_index > 0
    assert status.db_size > 0
    assert status.db_size_quota == 256 * 1024 * 1024
    assert status.version.startswith("3.6")
    assert status.errors == ()


def test_a_fresh_cluster_has_no_alarms_and_a_raised_one_is_reported(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool
) -> None:
    clients = [EtcdClient.open(url, tls, pool=pool) for url in trio.client_urls]
    assert clients[0].alarms() == []
    assert cluster_status(clients).alarms == ()
    member_id = clients[2].status().member_id
    # Raising an alarm is not a call kcp makes: etcd3's own client does it over gRPC.
    raiser = EtcdClient.open(trio.client_urls[0], tls, transport="grpc")
    raiser.etcd3.create_alarm(member_id=member_id)
    try:
        assert [(a.member_id, a.alarm) for a in clients[1].alarms()] == [(member_id, "NOSPACE")]
        status = cluster_status(clients)
        flagged = status.by_id(member_id)
        assert flagged is not None
        assert flagged.alarms == ("NOSPACE",)
        assert not flagged.healthy
        assert not status.healthy
    finally:
        raiser.etcd3.disarm_alarm(member_id=member_id)
        raiser.close()
    assert clients[0].alarms() == []
    # Members report a disarmed alarm in their status errors until they apply it.
    _wait(lambda: cluster_status(clients).healthy, 10, "the cluster to be healthy again")


def test_move_leader_hands_leadership_to_another_member(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool
) -> None:
    clients = [EtcdClient.open(url, tls, pool=pool) for url in trio.client_urls]
    leader = _leader_index(clients)
    follower = (leader + 1) % 3
    target = clients[(leader + 2) % 3].status().member_id

    with pytest.raises(EtcdNotLeader):
        clients[follower].move_leader(target)

    clients[leader].move_leader(target)
    _wait(lambda: cluster_status(clients).leader_id == target, 10, "the new leader")
    assert trio.members[(leader + 2) % 3].is_leader()

    # The cluster-level helper finds the leader by itself, wherever it is now.
    back = clients[leader].status().member_id
    previous = move_leader(clients, back)
    assert previous == target
    _wait(lambda: cluster_status(clients).leader_id == back, 10, "leadership to move back")


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


def test_a_silent_endpoint_fails_within_the_dial_timeout(
    silent_endpoint: str, tls: EtcdTLS, transport: Transport
) -> None:
    timeouts = EtcdTimeouts(dial=0.5, call=5)
    with EtcdClient.open(silent_endpoint, tls, timeouts=timeouts, transport=transport) as client:
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable, match="dial timeout") as raised:
            client.status()
        elapsed = time.monotonic() - started
    assert not isinstance(raised.value, EtcdTLSError)
    assert 0.4 < elapsed < 2.0


def test_dialling_starts_no_thread(trio: EtcdCluster, transport: Transport) -> None:
    """A thousand clusters mean many dials: each must not leave a thread behind."""
    before = threading.active_count()
    for _ in range(10):
        with EtcdClient.open(trio.endpoints[0], _tls(trio), transport=transport) as client:
            assert client.status().has_leader
            assert threading.active_count() <= before
    assert threading.active_count() <= before


def test_a_refused_endpoint_fails_at_once(tls: EtcdTLS, transport: Transport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with EtcdClient.open(f"127.0.0.1:{closed_port}", tls, transport=transport) as client:
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable, match="unreachable"):
            client.status()
    assert time.monotonic() - started < 2.0


def test_a_frozen_member_fails_within_the_call_timeout_and_recovers(
    trio: EtcdCluster, tls: EtcdTLS, transport: Transport
) -> None:
    member = trio.members[2]
    assert member.pid is not None
    timeouts = EtcdTimeouts(dial=0.5, call=0.5)
    with EtcdClient.open(member.client_url, tls, timeouts=timeouts, transport=transport) as client:
        client.status()  # connected
        os.kill(member.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(EtcdCallTimeout, match="call timeout"):
                client.status()
            assert time.monotonic() - started < 2.0
        finally:
            os.kill(member.pid, signal.SIGCONT)
        _wait(lambda: _answers(client), 10, "the thawed member to answer")


def _answers(client: EtcdClient) -> bool:
    try:
        client.status()
    except (EtcdUnavailable, EtcdCallTimeout):
        return False
    return True


def test_a_restarted_member_is_seen_up_at_once(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool
) -> None:
    leader = trio.leader_index()
    victim = 0 if leader != 0 else 1
    client = EtcdClient.open(trio.client_urls[victim], tls, pool=pool)
    client.status()
    trio.kill_member(victim)
    try:
        with pytest.raises(EtcdUnavailable):
            client.status()
    finally:
        trio.start_member(victim)
    # No reconnect backoff to sit out: the failed channel was replaced.
    started = time.monotonic()
    assert client.status().member_id == trio.members[victim].member_id()
    assert time.monotonic() - started < 1.0
    trio.wait_healthy()


def test_server_name_override_is_checked_against_the_server_certificate(
    trio: EtcdCluster, transport: Transport
) -> None:
    member = trio.members[0]
    named = _tls(trio, server_name=member.name)
    with EtcdClient.open(member.client_url, named, transport=transport) as client:
        assert client.status().member_id == member.member_id()
    wrong = _tls(trio, server_name="not-etcd")
    with (
        EtcdClient.open(member.client_url, wrong, transport=transport) as client,
        pytest.raises(EtcdTLSError, match="does not name"),
    ):
        client.status()


def test_the_pool_reuses_one_channel_per_endpoint_certificate_and_ca(
    trio: EtcdCluster, tls: EtcdTLS, pool: ChannelPool
) -> None:
    first = EtcdClient.open(trio.client_urls[0], tls, pool=pool)
    second = EtcdClient.open(trio.endpoints[0], tls, pool=pool)
    assert first.connection is second.connection
    second.close()  # a pooled client leaves the shared channel open
    assert first.status().member_id == trio.members[0].member_id()

    renewed = EtcdClient.open(trio.client_urls[0], _tls(trio), pool=pool)
    assert renewed.connection is not first.connection
    assert renewed.status().member_id == trio.members[0].member_id()
    stats = pool.stats()
    assert (stats.size, stats.opened, stats.reused, stats.evicted) == (2, 2, 1, 0)


def test_the_pool_is_bounded_and_closes_what_it_evicts(
    trio: EtcdCluster, tls: EtcdTLS, transport: Transport
) -> None:
    pool = ChannelPool(max_size=2, transport=transport)
    try:
        clients = [EtcdClient.open(url, tls, pool=pool) for url in trio.client_urls]
        oldest = clients[0].connection
        assert oldest.closed
        assert len(pool) == 2
        assert pool.stats().evicted == 1
        with pytest.raises(EtcdUnavailable, match="closed"):
            clients[0].status()
        assert [c.status().has_leader for c in clients[1:]] == [True, True]
        # Asking the pool again re-opens (and evicts the now least recently used).
        again = EtcdClient.open(trio.client_urls[0], tls, pool=pool)
        assert again.status().has_leader
        assert clients[1].connection.closed
        assert pool.stats().evicted == 2
    finally:
        pool.close_all()
    assert all(c.connection.closed for c in clients[1:])


def test_a_kept_alive_gateway_connection_is_reused_and_redialled_after_a_restart(
    trio: EtcdCluster, tls: EtcdTLS
) -> None:
    """One TLS connection serves every call; when the member restarts under it, the
    next call goes out on a fresh one without reporting the dead one as a failure."""
    leader = trio.leader_index()
    victim = 0 if leader != 0 else 1
    with EtcdClient.open(trio.client_urls[victim], tls, transport="gateway") as client:
        connection = client.connection
        assert isinstance(connection, GatewayConnection)
        for _ in range(5):
            client.status()
        client.members()
        client.alarms()
        assert connection.dials == 1
        assert connection.connected
        # Headers and body leave in two writes: Nagle must not hold the body back.
        assert connection.socket_option(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        trio.kill_member(victim)
        trio.start_member(victim)
        assert client.status().member_id == trio.members[victim].member_id()
        assert connection.dials == 2
    assert connection.closed
    assert not connection.connected
    trio.wait_healthy()


def test_a_gateway_request_never_waits_for_another_on_the_same_connection(
    trio: EtcdCluster, tls: EtcdTLS
) -> None:
    with EtcdClient.open(trio.client_urls[0], tls, transport="gateway") as client:
        connection = client.connection
        assert isinstance(connection, GatewayConnection)
        client.status()
        # Another request holding the kept-alive connection (as a slow call would).
        answers: list[int] = []
        with connection._lock:
            asking = threading.Thread(target=lambda: answers.append(client.status().member_id))
            asking.start()
            asking.join(5)  # a request that waited for the lock would still be waiting
            assert not asking.is_alive()
            assert answers == [trio.members[0].member_id()]
            assert connection.dials == 2  # a connection of its own, closed afterwards
        client.status()
        assert connection.dials == 2  # the kept-alive one is still there
        connection.close()
        with pytest.raises(EtcdUnavailable, match="closed"):
            client.status()


def test_the_gateway_reports_a_client_certificate_from_another_ca(trio: EtcdCluster) -> None:
    stranger = new_certificate_authority("stranger-ca", algorithm="ecdsa-p256")
    foreign = EtcdCluster(stranger).issue_client_certificate()
    tls = EtcdTLS(trio.ca_pem, foreign.cert_pem, foreign.key_pem)
    with (
        EtcdClient.open(trio.client_urls[0], tls, transport="gateway") as client,
        pytest.raises(
            EtcdTLSError, match=r"refuses a client certificate|refused our client certificate"
        ),
    ):
        client.status()


def test_a_server_it_does_not_trust_is_reported_with_the_ca_source(
    trio: EtcdCluster, transport: Transport
) -> None:
    stranger = new_certificate_authority("stranger-ca", algorithm="ecdsa-p256")
    pair = trio.issue_client_certificate()
    tls = EtcdTLS(stranger.cert_pem, pair.cert_pem, pair.key_pem, ca_source="Secret ns/c1-etcd")
    with (
        EtcdClient.open(trio.client_urls[0], tls, transport=transport) as client,
        pytest.raises(
            EtcdTLSError, match=r"not signed by the etcd CA we trust \(check Secret ns/c1-etcd "
        ),
    ):
        client.status()


def test_remove_member_shrinks_the_cluster(ca: KeyPair, transport: Transport) -> None:
    """On a cluster of its own: it ends with two members."""
    with EtcdCluster(ca, members=3, name=f"rm-{transport}") as trio:
        _remove_one_member(trio, _tls(trio), transport)


def _remove_one_member(trio: EtcdCluster, tls: EtcdTLS, transport: Transport) -> None:
    clients = [EtcdClient.open(url, tls, transport=transport) for url in trio.client_urls]
    try:
        leader = _leader_index(clients)
        gone = (leader + 1) % 3
        gone_id = clients[gone].status().member_id
        kept = sorted(c.status().member_id for i, c in enumerate(clients) if i != gone)

        # etcd refuses membership changes until the remaining members have been
        # connected for a few seconds ("unhealthy cluster"); a reconciler requeues.
        def removed() -> bool:
            try:
                clients[leader].remove_member(gone_id)
            except EtcdUnavailable as exc:
                assert "unhealthy cluster" in str(exc)
                return False
            return True

        _wait(removed, 15, "etcd to accept the removal")
        assert sorted(m.id for m in clients[leader].members()) == kept
        remaining = [c for i, c in enumerate(clients) if i != gone]
        status = cluster_status(remaining)
        assert status.healthy, status
        assert len(status.members) == 2
        # etcd stops a member that learns it was removed.
        _wait(lambda: not trio.members[gone].running, 15, "the removed member to exit")
        with pytest.raises(EtcdMemberNotFound):
            clients[leader].remove_member(gone_id)
    finally:
        for client in clients:
            client.close()
