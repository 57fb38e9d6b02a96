"""Loopback addresses: random, never 127.0.0.1, never shared by two allocators (two runs)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from kcp.sim.addresses import AddressError, LoopbackAddresses


def test_addresses_are_loopback_but_not_localhost(tmp_path: Path) -> None:
    pool = LoopbackAddresses(tmp_path)
    try:
        found = {pool.allocate([6443]) for _ in range(20)}
        assert len(found) == 20
        for address in found:
            octets = [int(o) for o in address.split(".")]
            assert octets[0] == 127 and address != "127.0.0.1" and octets[3] not in (0, 255)
        assert set(pool.held) == found
    finally:
        pool.close()
    assert pool.held == []


def test_two_allocators_with_the_same_luck_never_share(tmp_path: Path) -> None:
    first = LoopbackAddresses(tmp_path, rng=random.Random(7))
    second = LoopbackAddresses(tmp_path, rng=random.Random(7))
    try:
        a = first.allocate([2379, 6443])
        b = second.allocate([2379, 6443])
        assert a != b
        # Released, the address is free for the other run.
        first.release(a)
        assert second.allocate([2379], prefer=a) == a
    finally:
        first.close()
        second.close()


def test_an_address_whose_port_is_taken_is_skipped(tmp_path: Path) -> None:
    pool = LoopbackAddresses(tmp_path)
    busy = "127.77.77.77"
    with socket.socket() as sock:
        sock.bind((busy, 0))
        sock.listen()
        port = sock.getsockname()[1]
        try:
            got = pool.allocate([port], prefer=busy)
            assert got != busy
        finally:
            pool.close()


def test_running_out_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = LoopbackAddresses(tmp_path)
    monkeypatch.setattr(pool, "_try", lambda address, ports: False)
    with pytest.raises(AddressError, match="no free loopback address"):
        pool.allocate([6443])
