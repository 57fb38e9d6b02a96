"""`free_port` hands out listening ports that outgoing connections cannot take meanwhile."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kcp.testing.processes import free_port


def _ephemeral_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_come_from_below_the_ephemeral_range_and_bind() -> None:
    start = _ephemeral_start()
    if start - 15000 < 1000:
        pytest.skip("no room below this kernel's ephemeral range")
    ports = [free_port() for _ in range(50)]
    assert all(15000 <= p < start for p in ports), ports
    assert len(set(ports)) == len(ports), "a port was handed out twice"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_a_port_another_listener_holds_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    start = _ephemeral_start()
    if start - 15000 < 1000:
        pytest.skip("no room below this kernel's ephemeral range")
    busy, other = _bindable_ports_below(start, 2)
    with socket.socket() as held:
        held.bind(("127.0.0.1", busy))
        held.listen()
        draws = iter([busy, other])
        monkeypatch.setattr("kcp.testing.processes.random.randrange", lambda *_: next(draws))
        assert free_port() == other


def _bindable_ports_below(start: int, count: int) -> list[int]:
    found: list[int] = []
    for port in range(start - 1, 15000, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError("no free ports below the ephemeral range")
