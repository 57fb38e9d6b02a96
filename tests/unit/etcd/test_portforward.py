"""Port-forward tunnels against a real websocket server (the `websockets` library) on
loopback: the kubelet's framing, the errors a user sees, the shared loop, its bounds."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kcp import certs
from kcp.certs import KeyPair, client_tls_context
from kcp.etcd import DIRECT, EtcdTunnelError, PodEndpoint, PortForwardDialer, TunnelLoop
from kcp.etcd.tunnel import ForwardTarget, Tunnel
from tests.unit.etcd.portforward_servers import ECHO, ForwardingServer
from tests.unit.tracker.servers import silent_server

ROOT = Path(__file__).resolve().parents[3]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def api_ca() -> KeyPair:
    return certs.new_certificate_authority("workload-apiserver", algorithm="ecdsa-p256")


@pytest.fixture
def loop() -> Iterator[TunnelLoop]:
    loop = TunnelLoop()
    yield loop
    loop.close()


@pytest.fixture
def server(api_ca: KeyPair) -> Iterator[ForwardingServer]:
    forwards = {("kube-system", f"echo-{i}", 7): ECHO for i in range(3)}
    with ForwardingServer(api_ca, forwards=forwards, refused={"secret-pod"}) as running:
        yield running


def dialer_for(loop: TunnelLoop, url: str, ca: KeyPair, **kwargs: object) -> PortForwardDialer:
    return PortForwardDialer(
        loop,
        server=url,
        context=client_tls_context(ca.cert_pem),
        credentials="Secret ns/c1-kubeconfig",
        **kwargs,  # type: ignore[arg-type]
    )


def echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "the tunnel closed"
        got += chunk
    return bytes(got)


def test_pod_endpoints_are_told_from_host_endpoints() -> None:
    assert PodEndpoint.parse("kube-system/etcd-n1:2379") == PodEndpoint(
        "kube-system", "etcd-n1", 2379
    )
    assert str(PodEndpoint("kube-system", "etcd-n1", 2379)) == "kube-system/etcd-n1:2379"
    for host in ("10.0.0.5:2379", "[::1]:2379", "etcd-0.example:2379", "a/b/c:1", "a/b:x"):
        assert PodEndpoint.parse(host) is None


def test_bytes_cross_the_tunnel_both_ways_without_the_port_prefix(
    loop: TunnelLoop, server: ForwardingServer, api_ca: KeyPair
) -> None:
    dialer = dialer_for(loop, server.url, api_ca)
    dialed = dialer.connect("kube-system/echo-0:7", 5)
    with dialed.sock:
        assert echo(dialed.sock, b"hello") == b"hello"
        big = os.urandom(3 * 1024 * 1024)  # above every buffer: flow control both ways
        assert echo(dialed.sock, big) == big
    assert server.requests[-1] == "/api/v1/namespaces/kube-system/pods/echo-0/portforward?ports=7"
    wait_for(lambda: loop.stats().open == 0, what="the tunnel to close with its socket")
    stats = loop.stats()
    assert (stats.opened, stats.failed) == (1, {})
    assert dialed.why_closed() is None


def test_the_framing_of_the_channels(api_ca: KeyPair) -> None:
    """The channel byte starts each message; the port comes first on each channel, in any
    split; the error channel's text is the failure, recorded before the local side ends."""
    mine, theirs = socket.socketpair()
    target = ForwardTarget("h", 1, (), "/", 2379, client_tls_context(api_ca.cert_pem))
    tunnel = Tunnel(target, theirs, deadline=0.0)
    tunnel.state = "open"
    port = (2379).to_bytes(2, "little")
    tunnel._message(b"\x00" + port[:1], finished=True)
    tunnel._message(b"\x00" + port[1:] + b"he", finished=False)  # the rest of the prefix, data
    tunnel._message(b"llo", finished=True)  # a continuation has no channel byte
    tunnel._message(b"\x01" + port, finished=True)
    assert mine.recv(100) == b"hello"
    assert tunnel.failure is None
    tunnel._message(b"\x01dial tcp: connection refused", finished=True)
    assert tunnel.failure is not None
    assert (tunnel.failure.reason, tunnel.failure.detail) == (
        "port",
        "dial tcp: connection refused",
    )
    tunnel._message(b"\x07junk", finished=True)
    assert tunnel.ended
    mine.close()


def test_refusals_name_the_pod_and_what_to_check(
    loop: TunnelLoop, server: ForwardingServer, api_ca: KeyPair
) -> None:
    dialer = dialer_for(loop, server.url, api_ca)
    with pytest.raises(EtcdTunnelError) as missing:
        dialer.connect("kube-system/etcd-gone:2379", 5)
    assert missing.value.reason == "not_found"
    assert "Pod kube-system/etcd-gone" in str(missing.value)
    assert 'pods "etcd-gone" not found' in str(missing.value)
    with pytest.raises(EtcdTunnelError) as refused:
        dialer.connect("kube-system/secret-pod:2379", 5)
    assert refused.value.reason == "forbidden"
    assert "RBAC" in str(refused.value) and "Secret ns/c1-kubeconfig" in str(refused.value)
    assert "pods/portforward" in str(refused.value)
    server.forwards[("kube-system", "etcd-n1", 2379)] = "127.0.0.1:1"  # nothing listens
    with pytest.raises(EtcdTunnelError) as closed_port:
        dialed = dialer.connect("kube-system/etcd-n1:2379", 5)
        dialed.sock.recv(1)  # the kubelet's error may arrive after the upgrade
        raise EtcdTunnelError(dialed.why_closed() or "no reason", reason="port")
    assert "could not reach port 2379 inside the Pod" in str(closed_port.value)
    assert "Pod kube-system/etcd-n1" in str(closed_port.value)
    wait_for(lambda: loop.stats().failed == {"not_found": 1, "forbidden": 1, "port": 1})


def test_a_wrong_token_is_unauthorized(api_ca: KeyPair, loop: TunnelLoop) -> None:
    with ForwardingServer(api_ca, forwards={("ns", "p", 1): ECHO}, token="right") as server:
        wrong = dialer_for(loop, server.url, api_ca, headers={"Authorization": "Bearer wrong"})
        with pytest.raises(EtcdTunnelError, match="rejected the credentials in Secret") as exc:
            wrong.connect("ns/p:1", 5)
        assert exc.value.reason == "unauthorized"
        right = dialer_for(loop, server.url, api_ca, headers={"Authorization": "Bearer right"})
        with right.connect("ns/p:1", 5).sock as sock:
            assert echo(sock, b"ok") == b"ok"


def test_the_api_server_itself_unreachable_untrusted_or_silent(
    loop: TunnelLoop, server: ForwardingServer, api_ca: KeyPair
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nothing = f"https://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(EtcdTunnelError, match="cannot connect to the API server") as refused:
        dialer_for(loop, nothing, api_ca).connect("kube-system/echo-0:7", 5)
    assert refused.value.reason == "unreachable"
    other = certs.new_certificate_authority("someone-else", algorithm="ecdsa-p256")
    with pytest.raises(EtcdTunnelError, match="check the CA and client certificate") as tls:
        dialer_for(loop, server.url, other).connect("kube-system/echo-0:7", 5)
    assert tls.value.reason == "tls"
    with silent_server() as (host, port):
        started = time.monotonic()
        with pytest.raises(EtcdTunnelError, match="did not open within the dial timeout") as slow:
            dialer_for(loop, f"https://{host}:{port}", api_ca).connect("kube-system/x:1", 0.6)
        assert slow.value.reason == "timeout"
        assert time.monotonic() - started < 2.0


def test_a_tunnel_that_dies_says_why_and_the_next_dial_opens_another(
    loop: TunnelLoop, server: ForwardingServer, api_ca: KeyPair
) -> None:
    dialer = dialer_for(loop, server.url, api_ca)
    dialed = dialer.connect("kube-system/echo-0:7", 5)
    assert echo(dialed.sock, b"before") == b"before"
    server.drop_all()  # the API server's connection goes away without a websocket close
    assert dialed.sock.recv(10) == b""
    why = dialed.why_closed()
    assert why is not None and "broke" in why and "Pod kube-system/echo-0" in why
    dialed.sock.close()
    with dialer.connect("kube-system/echo-0:7", 5).sock as again:
        assert echo(again, b"after") == b"after"
    assert loop.stats().failed == {"lost": 1}


@contextlib.contextmanager
def freezable_relay(target: tuple[str, int]) -> Iterator[tuple[str, threading.Event]]:
    """A TCP relay to `target` that stops passing bytes (both ways) once `frozen` is set."""
    listener = socket.create_server(("127.0.0.1", 0))
    frozen = threading.Event()
    held: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if frozen.is_set():
                    continue
                sink.sendall(data)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                upstream = socket.create_connection(target)
                held.extend((conn, upstream))
                threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", frozen
    finally:
        listener.close()
        for sock in held:
            sock.close()


def test_keepalive_pings_find_a_silent_tunnel(server: ForwardingServer, api_ca: KeyPair) -> None:
    loop = TunnelLoop(keepalive=0.3, keepalive_timeout=0.5)
    port = int(server.url.rpartition(":")[2])
    try:
        with freezable_relay(("127.0.0.1", port)) as (url, frozen):
            context = client_tls_context(api_ca.cert_pem)
            dialer = PortForwardDialer(loop, server=url, context=context)
            dialed = dialer.connect("kube-system/echo-0:7", 5)
            time.sleep(1.0)  # idle, pinged and answered: still open
            assert echo(dialed.sock, b"alive") == b"alive"
            frozen.set()
            dialed.sock.settimeout(5)
            assert dialed.sock.recv(10) == b""
            why = dialed.why_closed()
            assert why is not None and "keepalive" in why
    finally:
        loop.close()


def test_tunnels_are_bounded_least_recently_used_first(
    server: ForwardingServer, api_ca: KeyPair
) -> None:
    loop = TunnelLoop(max_tunnels=2)
    try:
        dialer = dialer_for(loop, server.url, api_ca)
        first = dialer.connect("kube-system/echo-0:7", 5)
        second = dialer.connect("kube-system/echo-1:7", 5)
        assert echo(first.sock, b"recent") == b"recent"  # second is now the least recent
        third = dialer.connect("kube-system/echo-2:7", 5)
        second.sock.settimeout(5)
        assert second.sock.recv(1) == b""
        assert "to make room" in (second.why_closed() or "")
        assert echo(first.sock, b"kept") == b"kept"
        assert echo(third.sock, b"new") == b"new"
        stats = loop.stats()
        assert (stats.open, stats.evicted, stats.failed) == (2, 1, {})
    finally:
        loop.close()


def test_a_late_port_prefix_does_not_make_an_idle_tunnel_recent(
    server: ForwardingServer, api_ca: KeyPair
) -> None:
    held = server.prefixes_held["echo-1"] = threading.Event()
    with contextlib.closing(TunnelLoop(max_tunnels=2)) as loop:
        dialer = dialer_for(loop, server.url, api_ca)
        first = dialer.connect("kube-system/echo-0:7", 5)
        idle = dialer.connect("kube-system/echo-1:7", 5)
        assert echo(first.sock, b"recent") == b"recent"
        held.set()  # the kubelet's prefixes for the idle tunnel arrive after first's use
        time.sleep(0.5)
        dialer.connect("kube-system/echo-2:7", 5)
        idle.sock.settimeout(5)
        assert idle.sock.recv(1) == b""
        assert echo(first.sock, b"kept") == b"kept"


def test_a_smaller_bound_closes_the_least_recent_when_the_next_tunnel_opens(
    server: ForwardingServer, api_ca: KeyPair
) -> None:
    with contextlib.closing(TunnelLoop(max_tunnels=3)) as loop:
        dialer = dialer_for(loop, server.url, api_ca)
        kept = [dialer.connect(f"kube-system/echo-{i}:7", 5) for i in range(3)]
        loop.resize(2)
        assert loop.stats().max_open == 2
        assert echo(kept[0].sock, b"still") == b"still"  # nothing closed at once
        newest = dialer.connect("kube-system/echo-1:7", 5)
        for dialed in kept[1:]:
            dialed.sock.settimeout(5)
            assert dialed.sock.recv(1) == b""
        assert echo(kept[0].sock, b"recent") == b"recent"
        assert echo(newest.sock, b"new") == b"new"
        assert (loop.stats().open, loop.stats().evicted) == (2, 2)
        with pytest.raises(ValueError, match="at least one"):
            loop.resize(0)


def test_closing_a_dialer_closes_its_tunnels_and_no_other(
    loop: TunnelLoop, server: ForwardingServer, api_ca: KeyPair
) -> None:
    evicted = dialer_for(loop, server.url, api_ca)
    other = dialer_for(loop, server.url, api_ca)
    gone = evicted.connect("kube-system/echo-0:7", 5)
    kept = other.connect("kube-system/echo-0:7", 5)
    evicted.close()
    gone.sock.settimeout(2)
    assert gone.sock.recv(1) == b""
    assert echo(kept.sock, b"still") == b"still"
    with pytest.raises(EtcdTunnelError, match="was closed"):
        evicted.connect("kube-system/echo-0:7", 5)


def test_a_loopback_listener_tunnels_each_connection(
    loop: TunnelLoop, server: ForwardingServer, api_ca: KeyPair
) -> None:
    """What gRPC dials: a local address whose every connection opens a tunnel."""
    dialer = dialer_for(loop, server.url, api_ca)
    local = dialer.listen("kube-system/echo-1:7", 5)
    host, _, port = local.address.rpartition(":")
    assert host == "127.0.0.1"
    for payload in (b"one", b"two"):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            assert echo(conn, payload) == payload
    assert local.last_failure() is None
    missing = dialer.listen("kube-system/etcd-gone:2379", 5)
    host, _, port = missing.address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.settimeout(5)
        assert conn.recv(1) == b""
    wait_for(lambda: missing.last_failure() is not None)
    assert "Pod kube-system/etcd-gone" in (missing.last_failure() or "")
    local.close()
    missing.close()
    wait_for(lambda: loop.stats().listeners == 0)


def test_host_endpoints_go_direct(loop: TunnelLoop, server: ForwardingServer) -> None:
    dialer = dialer_for(loop, server.url, certs.new_certificate_authority("x"))
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        assert dialer.route(endpoint) == DIRECT.route(endpoint) == "direct"
        assert dialer.route("kube-system/etcd-a:2379") != "direct"
        with dialer.connect(endpoint, 5).sock:
            listener.accept()[0].close()
    assert loop.stats().opened == 0
    with pytest.raises(EtcdTunnelError, match="names Pod kube-system/etcd-a") as exc:
        DIRECT.connect("kube-system/etcd-a:2379", 1)
    assert exc.value.reason == "no_route"


def test_threads_stay_the_same_with_a_hundred_tunnels(api_ca: KeyPair) -> None:
    """No thread per tunnel: the server runs in a process of its own, so every thread
    counted here is the client's."""
    tunnels = 100
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.etcd.portforward_servers", str(tunnels)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    loop = TunnelLoop()
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        ca_pem = json.loads(child.stdout.readline()).encode()
        dialer = PortForwardDialer(loop, server=url, context=client_tls_context(ca_pem))
        before = threading.active_count()
        opened = [dialer.connect(f"kube-system/echo-{i}:7", 10) for i in range(tunnels)]
        for index, dialed in enumerate(opened):
            assert echo(dialed.sock, b"%d" % index) == b"%d" % index
        during = threading.active_count()
        assert loop.stats().open == tunnels
        print(f"threads: {before} before, {during} with {tunnels} open tunnels")
        assert during == before + 1  # the loop's one thread, whatever the number of tunnels
        for dialed in opened:
            dialed.sock.close()
        wait_for(lambda: loop.stats().open == 0, what="every tunnel to close")
    finally:
        loop.close()
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)
