"""The load balancer and the blackhole, with real TLS backends on loopback addresses."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcp import certs
from kcp.sim.addresses import LoopbackAddresses
from kcp.sim.apiserver import ReadyzProbe
from kcp.sim.blackhole import Blackhole
from kcp.sim.loadbalancer import LoadBalancer


class _Backend:
    """An HTTPS server answering `/readyz` (200 or 500) and `/name` with its name."""

    def __init__(
        self, name: str, host: str, ca: certs.KeyPair, tmp: Path, *, keep_alive: bool = False
    ) -> None:
        pair = certs.issue_certificate(
            ca, common_name=name, usages=("server",), ip_addresses=(host,), algorithm="ecdsa-p256"
        )
        (tmp / f"{name}.crt").write_bytes(pair.cert_pem)
        (tmp / f"{name}.key").write_bytes(pair.key_pem)
        self.ready = True
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:
                code = 200 if self.path != "/readyz" or backend.ready else 500
                body = name.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / f"{name}.crt", tmp / f"{name}.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[LoadBalancer, list[_Backend], ssl.SSLContext]]:
    ca = certs.new_certificate_authority("ca", algorithm="ecdsa-p256")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    pool = LoopbackAddresses(tmp_path / "locks")
    host = pool.allocate([0])
    lb_host = pool.allocate([0])
    backends = [_Backend(n, host, ca, tmp_path) for n in ("a", "b")]
    lb = LoadBalancer(lb_host, _free(lb_host), ca_file=str(tmp_path / "ca.crt"), check_interval=0.2)
    lb.start()
    for backend in backends:
        lb.set_backend(backend.server.server_address[0] + f":{backend.port}", host, backend.port)
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client.check_hostname = False
    try:
        yield lb, backends, client
    finally:
        lb.stop()
        for backend in backends:
            backend.close()
        pool.close()


def _free(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _get(lb: LoadBalancer, context: ssl.SSLContext) -> str:
    with socket.create_connection(lb.endpoint, timeout=3) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(b"GET /name HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def _wait(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_round_robin_over_healthy_backends(
    setup: tuple[LoadBalancer, list[_Backend], ssl.SSLContext],
) -> None:
    lb, _, client = setup
    _wait(lambda: len(lb.healthy_backends()) == 2)
    answers = {_get(lb, client) for _ in range(6)}
    assert answers == {"a", "b"}


def test_an_unhealthy_backend_gets_no_traffic(
    setup: tuple[LoadBalancer, list[_Backend], ssl.SSLContext],
) -> None:
    lb, backends, client = setup
    _wait(lambda: len(lb.healthy_backends()) == 2)
    backends[0].ready = False
    _wait(lambda: len(lb.healthy_backends()) == 1)
    assert {_get(lb, client) for _ in range(6)} == {"b"}


def test_no_backend_closes_the_connection(
    setup: tuple[LoadBalancer, list[_Backend], ssl.SSLContext],
) -> None:
    lb, backends, _ = setup
    for backend in backends:
        backend.ready = False
    _wait(lambda: not lb.healthy_backends())
    # A health check already in flight when the backends turned unready may still
    # report them healthy once: wait a full check interval and confirm.
    time.sleep(lb.check_interval * 2)
    _wait(lambda: not lb.healthy_backends())
    with socket.create_connection(lb.endpoint, timeout=3) as raw:
        raw.settimeout(3)
        assert raw.recv(1) == b""


def test_blackhole_accepts_and_never_answers_then_restores(
    setup: tuple[LoadBalancer, list[_Backend], ssl.SSLContext],
) -> None:
    lb, _, client = setup
    _wait(lambda: len(lb.healthy_backends()) == 2)
    lb.blackhole()
    with socket.create_connection(lb.endpoint, timeout=3) as raw:
        raw.settimeout(0.5)
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        with pytest.raises(TimeoutError):
            raw.recv(1)
        lb.restore()
        raw.settimeout(3)
        assert raw.recv(1) == b""  # a connection that went silent is closed on restore
    assert _get(lb, client) in {"a", "b"}


def test_blackhole_listener(tmp_path: Path) -> None:
    pool = LoopbackAddresses(tmp_path)
    host = pool.allocate([0])
    port = _free(host)
    hole = Blackhole(host, port)
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(0.3)
            sock.sendall(b"ping")
            with pytest.raises(TimeoutError):
                sock.recv(1)
            _wait(lambda: hole.connections == 1)
            hole.close()
            sock.settimeout(2)
            # Closed with our unread bytes in its buffer, the end may come as a reset.
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
        with pytest.raises(OSError):
            socket.create_connection((host, port), timeout=1).close()
    finally:
        hole.close()
        pool.close()


def test_backends_are_checked_against_their_own_ca(tmp_path: Path) -> None:
    """A load balancer started before any cluster CA exists checks each backend with its CA."""
    ca = certs.new_certificate_authority("ca", algorithm="ecdsa-p256")
    other = certs.new_certificate_authority("other", algorithm="ecdsa-p256")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "other.crt").write_bytes(other.cert_pem)
    pool = LoopbackAddresses(tmp_path / "locks")
    host, lb_host = pool.allocate([0]), pool.allocate([0])
    trusted = _Backend("trusted", host, ca, tmp_path)
    wrong = _Backend("wrong", host, ca, tmp_path)
    lb = LoadBalancer(lb_host, _free(lb_host), check_interval=0.2)
    lb.start()
    try:
        lb.set_backend("trusted", host, trusted.port, ca_file=str(tmp_path / "ca.crt"))
        lb.set_backend("wrong", host, wrong.port, ca_file=str(tmp_path / "other.crt"))
        _wait(lambda: lb.healthy_backends() == ["trusted"])
        assert lb.check_now() == ["trusted"]
    finally:
        lb.stop()
        trusted.close()
        wrong.close()
        pool.close()


def test_the_readyz_probe_keeps_its_connection(tmp_path: Path) -> None:
    ca = certs.new_certificate_authority("ca", algorithm="ecdsa-p256")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    pool = LoopbackAddresses(tmp_path / "locks")
    host = pool.allocate([0])
    backend = _Backend("a", host, ca, tmp_path, keep_alive=True)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    probe = ReadyzProbe(host, backend.port, context, timeout=1.0)
    try:
        assert [probe.check() for _ in range(3)] == [True, True, True]
        backend.ready = False
        assert not probe.check()
        backend.ready = True
        assert probe.check()
        assert probe.connects == 1  # one TLS handshake for five checks
        nobody = ReadyzProbe(host, _free(host), context, timeout=1.0)
        assert not nobody.check()
    finally:
        probe.close()
        backend.close()
        pool.close()
