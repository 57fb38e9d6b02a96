"""ChannelPool bookkeeping: keys, reuse, LRU bound, closing. Channels are lazy: no network."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from kcp.certs import KeyPair, issue_certificate, new_certificate_authority
from kcp.etcd import ChannelKey, ChannelPool, Connection, EtcdTLS, EtcdUnavailable


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_certificate_authority("etcd-ca", algorithm="ecdsa-p256")


def _tls(ca: KeyPair, *, server_name: str | None = None) -> EtcdTLS:
    pair = issue_certificate(
        ca,
        common_name="kcp",
        usages=("client",),
        algorithm="ecdsa-p256",
        validity=timedelta(hours=1),
    )
    return EtcdTLS(ca.cert_pem, pair.cert_pem, pair.key_pem, server_name=server_name)


def test_same_endpoint_certificate_and_ca_share_one_connection(ca: KeyPair) -> None:
    pool = ChannelPool(transport="grpc")
    tls = _tls(ca)
    first = pool.get("https://127.0.0.1:2379", tls)
    assert pool.get("127.0.0.1:2379", tls) is first
    assert pool.get("https://127.0.0.1:2379/", tls) is first
    stats = pool.stats()
    assert (stats.size, stats.opened, stats.reused, stats.evicted) == (1, 1, 2, 0)
    pool.close_all()


def test_a_new_certificate_ca_or_server_name_gets_its_own_connection(ca: KeyPair) -> None:
    pool = ChannelPool(transport="grpc")
    tls = _tls(ca)
    other_ca = new_certificate_authority("rotated", algorithm="ecdsa-p256")
    base = pool.get("127.0.0.1:2379", tls)
    renewed = pool.get("127.0.0.1:2379", _tls(ca))
    rotated = pool.get("127.0.0.1:2379", EtcdTLS(other_ca.cert_pem, tls.cert_pem, tls.key_pem))
    named = pool.get("127.0.0.1:2379", EtcdTLS(tls.ca_pem, tls.cert_pem, tls.key_pem, "etcd-0"))
    elsewhere = pool.get("127.0.0.2:2379", tls)
    assert len({id(c) for c in (base, renewed, rotated, named, elsewhere)}) == 5
    assert pool.stats().opened == 5
    pool.close_all()


def test_the_least_recently_used_connection_is_evicted_and_closed(ca: KeyPair) -> None:
    pool = ChannelPool(max_size=2, transport="grpc")
    tls = _tls(ca)
    a = pool.get("127.0.0.1:1001", tls)
    b = pool.get("127.0.0.1:1002", tls)
    assert pool.get("127.0.0.1:1001", tls) is a  # a is now the most recent
    c = pool.get("127.0.0.1:1003", tls)
    assert b.closed
    assert not a.closed
    assert not c.closed
    assert ChannelKey.for_tls("127.0.0.1:1002", tls) not in pool
    assert ChannelKey.for_tls("127.0.0.1:1001", tls) in pool
    assert pool.stats().evicted == 1
    assert len(pool) == 2
    # Asking again for the evicted key opens a fresh connection.
    b2 = pool.get("127.0.0.1:1002", tls)
    assert b2 is not b
    assert a.closed  # a was least recently used by then
    assert pool.stats().evicted == 2
    pool.close_all()


def test_an_evicted_connection_refuses_calls_with_a_clear_error(ca: KeyPair) -> None:
    pool = ChannelPool(max_size=1, transport="grpc")
    tls = _tls(ca)
    old = pool.get("127.0.0.1:1001", tls)
    pool.get("127.0.0.1:1002", tls)
    with pytest.raises(EtcdUnavailable, match="evicted from the channel pool"):
        old.ensure_connected(1.0)


def test_close_all_close_endpoints_and_discard(ca: KeyPair) -> None:
    pool = ChannelPool(transport="grpc")
    tls = _tls(ca)
    conns = [pool.get(f"127.0.0.1:{port}", tls) for port in (1001, 1002, 1003)]
    assert pool.close_endpoints(["https://127.0.0.1:1001"]) == 1
    assert conns[0].closed
    pool.discard("127.0.0.1:1002", tls)
    assert conns[1].closed
    assert len(pool) == 1
    pool.close_all()
    assert all(c.closed for c in conns)
    assert len(pool) == 0
    # The pool stays usable.
    assert not pool.get("127.0.0.1:1001", tls).closed
    pool.close_all()


def test_concurrent_gets_of_one_key_open_one_connection(ca: KeyPair) -> None:
    pool = ChannelPool(transport="grpc")
    tls = _tls(ca)
    got: list[Connection] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        got.append(pool.get("127.0.0.1:2379", tls))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8
    assert len({id(c) for c in got}) == 1
    assert len(pool) == 1
    assert pool.stats().reused + pool.stats().opened == 8
    pool.close_all()


def test_the_pool_keeps_no_key_material(ca: KeyPair) -> None:
    pool = ChannelPool(transport="grpc")
    tls = _tls(ca)
    connection = pool.get("127.0.0.1:2379", tls)
    key_text = tls.key_pem
    key = ChannelKey.for_tls("127.0.0.1:2379", tls)
    held = [*vars(pool).values(), *vars(connection).values(), *vars(key).values()]
    assert not [v for v in held if isinstance(v, bytes | str) and key_text.strip() in _b(v)]
    assert key_text.decode() not in repr(key) + repr(connection) + repr(tls) + repr(pool.stats())
    pool.close_all()


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ChannelPool(max_size=0)


def test_a_resized_pool_trims_the_least_recently_used_when_it_next_opens(ca: KeyPair) -> None:
    pool = ChannelPool(max_size=3, transport="grpc")
    tls = _tls(ca)
    a, b, c = (pool.get(f"127.0.0.1:{port}", tls) for port in (1001, 1002, 1003))
    pool.resize(2)
    assert len(pool) == 3 and not a.closed  # nothing closed at once
    d = pool.get("127.0.0.1:1004", tls)
    assert a.closed and b.closed and not c.closed and not d.closed
    assert pool.stats().max_size == 2
    pool.resize(10)
    pool.get("127.0.0.1:1005", tls)
    assert len(pool) == 3
    with pytest.raises(ValueError, match="at least one"):
        pool.resize(0)
    pool.close_all()


def test_gateway_connections_with_the_same_material_share_one_tls_context(ca: KeyPair) -> None:
    """An OpenSSL context with a client pair costs as much memory as an idle connection:
    a cluster's members, asked with one certificate, share one."""
    pool = ChannelPool(transport="gateway")
    tls, renewed = _tls(ca), _tls(ca)
    first = pool.get("127.0.0.1:1001", tls)
    second = pool.get("127.0.0.1:1002", tls)
    other = pool.get("127.0.0.1:1001", renewed)
    assert first._context is second._context  # type: ignore[union-attr]
    assert other._context is not first._context  # type: ignore[union-attr]
    pool.close_all()
